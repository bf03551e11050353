"""Greedy rollouts of a new-API-stack checkpoint through RLlib's own connector pipelines.

One episode at a time, as RLlib's ``SingleAgentEnvRunner`` steps (and as RLlib's
example ``policy_inference_after_training_with_connectors.py`` does): a
``SingleAgentEpisode`` holds the episode; each step runs the checkpoint's
env-to-module pipeline on it, records the module input ``batch[Columns.OBS]``
(before the forward pass, so the observations explained are exactly what the
module saw, filters and e.g. ``FlattenObservations`` included), runs
``module.forward_inference``, then the module-to-env pipeline for the env action
(unsquashed/clipped as RLlib sends it), steps the environment and adds the step to
the episode. The recorded actions are the module's (before unsquashing/clipping).

Stateful (recurrent) modules: as in ``SingleAgentEnvRunner``, the module's
``STATE_OUT`` (unbatched by the module-to-env pipeline) is stored in the episode's
``extra_model_outputs`` each step, and RLlib's ``AddStatesFromEpisodesToBatch``
connector feeds it back as the next step's ``STATE_IN`` (the module's initial state
at an episode's first step). Each step's ``batch[Columns.STATE_IN]`` is recorded
with its observation, before the forward pass: the state the step was taken in, as
one array per state leaf (``tree.flatten`` order, the names of
``recurrent_layout(module)``), of the shape ``module.get_initial_state()`` gives
one sample. The batch has a time axis then (``AddTimeDimToBatchAndZeroPad``): the
observation comes as ``(1, 1, *obs_shape)``, the state leaves as ``(1, *leaf_shape)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rllib_saliency.cli.checkpoint import Checkpoint, check_environment, env_error
from rllib_saliency.cli.errors import IMPORT_HINT, CLIError
from rllib_saliency.cli.new_stack import ENV_TO_MODULE_DIR, MODULE_TO_ENV_DIR
from rllib_saliency.cli.rollout import Rollouts, collect


def make_env(config: dict[str, Any]) -> Any:
    """One environment as RLlib 2.60's ``SingleAgentEnvRunner.make_env`` creates each of its
    vectorised ones: a Tune-registered creator or a callable (class) called with an
    ``EnvContext``, otherwise ``gym.make(env, **env_config)``."""
    import gymnasium as gym
    from ray.rllib.env.env_context import EnvContext
    from ray.tune.registry import ENV_CREATOR, _global_registry

    check_environment(config)
    env = config.get("env")
    env_config = config.get("env_config") or {}
    context = (
        env_config
        if isinstance(env_config, EnvContext)
        else EnvContext(dict(env_config), worker_index=0, num_workers=0)
    )
    try:
        if isinstance(env, str) and _global_registry.contains(ENV_CREATOR, env):
            return _global_registry.get(ENV_CREATOR, env)(context)
        if callable(env):
            return env(context)
        return gym.make(env, **dict(env_config))
    except (gym.error.Error, ValueError, ImportError, TypeError) as error:
        raise env_error(config, error) from error


def load_connectors(checkpoint: Checkpoint) -> tuple[Any, Any]:
    """The env runner's env-to-module and module-to-env pipelines, with their saved state."""
    import os

    from ray.rllib.connectors.env_to_module import EnvToModulePipeline
    from ray.rllib.connectors.module_to_env import ModuleToEnvPipeline

    try:
        return (
            EnvToModulePipeline.from_checkpoint(os.path.join(checkpoint.path, ENV_TO_MODULE_DIR)),
            ModuleToEnvPipeline.from_checkpoint(os.path.join(checkpoint.path, MODULE_TO_ENV_DIR)),
        )
    except (ModuleNotFoundError, AttributeError) as error:
        raise CLIError(
            f"the checkpoint's connectors refer to code that cannot be found in this process ({error}); "
            f"{IMPORT_HINT}."
        ) from error


def _numpy(value: Any) -> Any:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else value


def _module_input(batch: dict[str, Any], module: Any, module_id: str, stateful: bool) -> np.ndarray:
    """The observation row the module is about to see, as numpy (stateful modules: the
    batch has a time axis of one step)."""
    from ray.rllib.core.columns import Columns

    obs = _numpy(batch.get(Columns.OBS))
    shape = tuple(module.observation_space.shape or ())
    lead = (1, 1) if stateful else (1,)
    if not isinstance(obs, np.ndarray) or obs.shape != (*lead, *shape):
        what = f"shape {obs.shape}" if isinstance(obs, np.ndarray) else type(obs).__name__
        raise CLIError(
            f"the env-to-module connectors give module {module_id!r} an observation batch of {what}, "
            f"not {(*lead, *shape)} as its observation space {module.observation_space} says"
            + (" (batch, time)" if stateful else "")
            + "; rllib-saliency explains modules that take one observation array per step "
            + ("(no nested observations)." if stateful else "(no time dimension, no nested observations).")
        )
    return obs[(0,) * len(lead)]


def _module_state(batch: dict[str, Any], initial: Any, module_id: str) -> list[np.ndarray]:
    """The state the stateful module is about to step from (``batch[Columns.STATE_IN]``, one
    sample): its leaves in ``tree.flatten`` order, each of its initial state's shape."""
    import tree
    from ray.rllib.core.columns import Columns

    state = batch.get(Columns.STATE_IN)
    leaves = []
    try:
        tree.assert_same_structure(initial, state, check_types=False)
    except (TypeError, ValueError) as error:
        raise CLIError(
            f"the env-to-module connectors give stateful module {module_id!r} a STATE_IN that is not "
            f"structured as its initial state ({error}); rllib-saliency records the state each step "
            "is taken in from RLlib's AddStatesFromEpisodesToBatch connector."
        ) from error
    for leaf, first in zip(tree.flatten(state), tree.flatten(initial), strict=True):
        array = np.asarray(_numpy(leaf), np.float32)
        expected = (1, *np.shape(_numpy(first)))
        if array.shape != expected:
            raise CLIError(
                f"the env-to-module connectors give stateful module {module_id!r} a STATE_IN leaf of "
                f"shape {array.shape}, not {expected} (one sample of its initial state)."
            )
        leaves.append(array[0])
    return leaves


def rollout_new_stack(checkpoint: Checkpoint, module: Any, episodes: int, seed: int, bar: Any) -> Rollouts:
    """Whole greedy episodes (``explore=False``) in the checkpoint's own env, episode ``k``
    reset with seed ``seed + k``."""
    from ray.rllib.core.columns import Columns
    from ray.rllib.env.multi_agent_env import MultiAgentEnv
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    env_to_module, module_to_env = load_connectors(checkpoint)
    env = make_env(checkpoint.config)
    stateful = module.is_stateful()
    initial = module.get_initial_state() if stateful else None
    observations, actions, episode_ids, states = [], [], [], []
    try:
        if isinstance(env, MultiAgentEnv):
            raise CLIError(
                "the environment is a MultiAgentEnv: rollouts of multi-agent environments are not "
                "supported on the new API stack yet; pass --obs FILE."
            )
        for index in range(episodes):
            observation, infos = env.reset(seed=seed + index)
            episode = SingleAgentEpisode(
                observations=[observation],
                infos=[infos],
                observation_space=env.observation_space,
                action_space=env.action_space,
            )
            shared_data: dict[str, Any] = {}
            while not episode.is_done:
                batch = env_to_module(
                    episodes=[episode], rl_module=module, explore=False, shared_data=shared_data
                )
                observations.append(_module_input(batch, module, checkpoint.policy_id, stateful))
                if stateful:  # the state this step is taken in
                    states.append(_module_state(batch, initial, checkpoint.policy_id))
                outputs = module.forward_inference(batch)
                to_env = module_to_env(
                    batch=outputs,
                    episodes=[episode],
                    rl_module=module,
                    explore=False,
                    shared_data=shared_data,
                )
                action = to_env.pop(Columns.ACTIONS)[0]
                env_action = to_env.pop(Columns.ACTIONS_FOR_ENV, [action])[0]
                observation, reward, terminated, truncated, infos = env.step(env_action)
                episode.add_env_step(
                    observation,
                    action,
                    reward,
                    infos=infos,
                    terminated=terminated,
                    truncated=truncated,
                    # STATE_OUT included: the next step's STATE_IN (AddStatesFromEpisodesToBatch).
                    extra_model_outputs={key: value[0] for key, value in to_env.items()},
                )
                actions.append(np.asarray(action))
                episode_ids.append(index)
            bar.update(1)
    finally:
        env.close()
    return collect(
        [np.stack(observations)] if observations else [],
        [np.stack(actions)] if actions else [],
        [np.asarray(episode_ids, np.int64)],
        episodes,
        checkpoint.policy_id,
        [[np.stack(leaf) for leaf in zip(*states, strict=True)]] if states else [],
    )
