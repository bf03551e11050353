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

Multi-agent checkpoints (:func:`rollout_new_stack_multi_agent`): the same loop over a
``MultiAgentEpisode`` with the config's ``policy_mapping_fn``, as RLlib's
``MultiAgentEnvRunner`` steps one env, the learner's whole ``MultiRLModule`` acting for
every agent; the chosen module's rows of each step's env-to-module output are recorded,
with the agent each belongs to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from rllib_saliency.errors import IMPORT_HINT, CLIError
from rllib_saliency.stacks.checkpoint import Checkpoint, check_environment, env_error
from rllib_saliency.stacks.new.checkpoint import ENV_TO_MODULE_DIR, MODULE_TO_ENV_DIR
from rllib_saliency.stacks.rollout import PlayedEpisode, Rollouts, collect, from_played

if TYPE_CHECKING:
    from rllib_saliency.movie.rollout import EpisodeRecord


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

    if not os.path.isdir(os.path.join(checkpoint.path, ENV_TO_MODULE_DIR)):
        return offline_connectors(checkpoint)
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


def offline_connectors(checkpoint: Checkpoint) -> tuple[Any, Any]:
    """An offline algorithm's checkpoint saves no connectors (it had no env runners): pipelines
    built from its config for its env's spaces, as its env runners would have built them."""
    from rllib_saliency.stacks.new.checkpoint import offline_without_connectors
    from rllib_saliency.stacks.new.offline_env import connectors_from_config

    if not offline_without_connectors(checkpoint):
        raise CLIError(f"{checkpoint.path!r} lacks {ENV_TO_MODULE_DIR}/: the checkpoint is incomplete.")
    env = make_env(checkpoint.config)
    try:
        return connectors_from_config(checkpoint.config, env.observation_space, env.action_space)
    except (ModuleNotFoundError, AttributeError) as error:
        raise CLIError(
            f"the checkpoint's config refers to code that cannot be found in this process ({error}); "
            f"{IMPORT_HINT}."
        ) from error
    finally:
        env.close()


def _numpy(value: Any) -> Any:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else value


def _module_input(batch: dict[str, Any], module: Any, module_id: str, stateful: bool) -> np.ndarray:
    """The observation row the module is about to see, as numpy (stateful modules: the
    batch has a time axis of one step)."""
    return _module_rows(batch, module, module_id, stateful, 1)[0]


def _module_rows(batch: dict[str, Any], module: Any, module_id: str, stateful: bool, n: int) -> np.ndarray:
    """The ``n`` observation rows the module is about to see, ``(n, *obs_shape)`` as numpy
    (stateful modules: the batch has a time axis of one step, dropped here)."""
    from ray.rllib.core.columns import Columns

    obs = _numpy(batch.get(Columns.OBS))
    shape = tuple(module.observation_space.shape or ())
    lead = (n, 1) if stateful else (n,)
    if not isinstance(obs, np.ndarray) or obs.shape != (*lead, *shape):
        what = f"shape {obs.shape}" if isinstance(obs, np.ndarray) else type(obs).__name__
        raise CLIError(
            f"the env-to-module connectors give module {module_id!r} an observation batch of {what}, "
            f"not {(*lead, *shape)} as its observation space {module.observation_space} says"
            + (" (batch, time)" if stateful else "")
            + "; rllib-saliency explains modules that take one observation array per step "
            + ("(no nested observations)." if stateful else "(no time dimension, no nested observations).")
        )
    return obs[:, 0] if stateful else obs


def _module_state(batch: dict[str, Any], initial: Any, module_id: str) -> list[np.ndarray]:
    """The state the stateful module is about to step from (``batch[Columns.STATE_IN]``, one
    sample): its leaves in ``tree.flatten`` order, each of its initial state's shape."""
    return [leaf[0] for leaf in _module_states(batch, initial, module_id, 1)]


def _module_states(batch: dict[str, Any], initial: Any, module_id: str, n: int) -> list[np.ndarray]:
    """The states the stateful module is about to step ``n`` rows from
    (``batch[Columns.STATE_IN]``): its leaves in ``tree.flatten`` order, each ``(n, *shape)``
    with its initial state's ``shape``."""
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
        expected = (n, *np.shape(_numpy(first)))
        if array.shape != expected:
            raise CLIError(
                f"the env-to-module connectors give stateful module {module_id!r} a STATE_IN leaf of "
                f"shape {array.shape}, not {expected} ({n} sample(s) of its initial state)."
            )
        leaves.append(array)
    return leaves


def play_module_episode(
    env: Any,
    env_to_module: Any,
    module_to_env: Any,
    module: Any,
    module_id: str,
    seed: int,
    max_steps: int | None = None,
    before_step: Callable[[], None] | None = None,
) -> PlayedEpisode:
    """One greedy episode (``explore=False``) of a single-agent module in ``env``, reset with
    ``seed``, through the given connector pipelines as ``SingleAgentEnvRunner`` steps (see the
    module docstring). ``before_step`` runs before each step's forward pass (e.g. a movie
    renders the state acted on)."""
    from ray.rllib.core.columns import Columns
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    stateful = module.is_stateful()
    initial = module.get_initial_state() if stateful else None
    played = PlayedEpisode()
    observation, infos = env.reset(seed=seed)
    episode = SingleAgentEpisode(
        observations=[observation],
        infos=[infos],
        observation_space=env.observation_space,
        action_space=env.action_space,
    )
    shared_data: dict[str, Any] = {}
    while not episode.is_done:
        if max_steps is not None and len(played) >= max_steps:
            played.cut = True
            break
        batch = env_to_module(episodes=[episode], rl_module=module, explore=False, shared_data=shared_data)
        if before_step is not None:
            before_step()
        played.observations.append(np.asarray(_module_input(batch, module, module_id, stateful), np.float32))
        if stateful:  # the state this step is taken in
            played.states.append(_module_state(batch, initial, module_id))
        outputs = module.forward_inference(batch)
        to_env = module_to_env(
            batch=outputs, episodes=[episode], rl_module=module, explore=False, shared_data=shared_data
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
        played.actions.append(np.asarray(action))
        played.rewards.append(float(reward))
    return played


def rollout_new_stack(checkpoint: Checkpoint, module: Any, episodes: int, seed: int, bar: Any) -> Rollouts:
    """Whole greedy episodes (:func:`play_module_episode`) in the checkpoint's own env, episode
    ``k`` reset with seed ``seed + k``."""
    from ray.rllib.env.multi_agent_env import MultiAgentEnv

    env_to_module, module_to_env = load_connectors(checkpoint)
    env = make_env(checkpoint.config)
    played = []
    try:
        if isinstance(env, MultiAgentEnv):
            raise CLIError(
                "the environment is a MultiAgentEnv: rollouts of multi-agent environments are not "
                "supported on the new API stack yet; pass --obs FILE."
            )
        for index in range(episodes):
            played.append(
                play_module_episode(
                    env, env_to_module, module_to_env, module, checkpoint.policy_id, seed + index
                )
            )
            bar.update(1)
    finally:
        env.close()
    return from_played(played, checkpoint.policy_id)


def mapping_function(config: dict[str, Any]) -> Any:
    """The checkpoint's agent-to-module mapping (``config.multi_agent(policy_mapping_fn=...)``),
    called as RLlib's ``MultiAgentEpisode`` calls it: ``fn(agent_id, episode)``."""
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

    function = config.get("policy_mapping_fn") or AlgorithmConfig.DEFAULT_POLICY_MAPPING_FN
    if not callable(function):
        raise CLIError(
            f"the checkpoint's policy_mapping_fn is a {type(function).__name__}, not a function of "
            "(agent_id, episode): the config is damaged; pass --obs FILE."
        )
    return function


def rollout_new_stack_multi_agent(
    checkpoint: Checkpoint, multi_module: Any, episodes: int, seed: int, bar: Any
) -> Rollouts:
    """Whole greedy episodes (``explore=False``) of a multi-agent checkpoint in its own
    ``MultiAgentEnv``, every agent acting with the module ``policy_mapping_fn`` maps it to,
    episode ``k`` reset with seed ``seed + k``; recorded: the rows of the chosen module
    (``checkpoint.policy_id``), with the agent each row belongs to.

    As RLlib 2.60's ``MultiAgentEnvRunner`` steps one env: a ``MultiAgentEpisode`` with the
    config's mapping; each step the env-to-module pipeline maps the acting agents' data to
    module batches (``AgentToModuleMapping``; the row order per module is
    ``shared_data["memorized_map_structure"][module_id]``, as ``(episode id, agent id)``
    pairs), ``multi_module.forward_inference`` runs every module on its rows, the
    module-to-env pipeline unmaps the actions to the agents (unsquashed/clipped for the env
    under ``ACTIONS_FOR_ENV``), the env steps with them, and the step goes into the episode
    (``STATE_OUT`` included: stateful modules' next ``STATE_IN``). The chosen module's
    ``batch[module_id][Columns.OBS]`` (and ``STATE_IN``) rows are recorded before the forward
    pass; its actions are the module's (before unsquashing/clipping)."""
    from collections import defaultdict

    from ray.rllib.core.columns import Columns
    from ray.rllib.env.multi_agent_env import MultiAgentEnv
    from ray.rllib.env.multi_agent_episode import MultiAgentEpisode

    module_id = checkpoint.policy_id
    module = multi_module[module_id]
    env_to_module, module_to_env = load_connectors(checkpoint)
    mapping = mapping_function(checkpoint.config)
    env = make_env(checkpoint.config)
    stateful = module.is_stateful()
    initial = module.get_initial_state() if stateful else None
    observations, actions, episode_ids, agent_ids, states = [], [], [], [], []
    acted: dict[str, set[str]] = defaultdict(set)  # module id -> agents that acted with it
    try:
        base = getattr(env, "unwrapped", env)  # the MultiAgentEnv under any gymnasium wrappers
        if not isinstance(base, MultiAgentEnv):
            raise CLIError(
                f"the checkpoint's config is multi-agent but its environment "
                f"{checkpoint.config.get('env')!r} is a {type(env).__name__}, not a ray.rllib "
                "MultiAgentEnv: it cannot be rolled out with the config's policy_mapping_fn; pass "
                "--obs FILE."
            )
        for index in range(episodes):
            observation, infos = env.reset(seed=seed + index)
            agents = list(getattr(base, "possible_agents", None) or observation)
            episode = MultiAgentEpisode(
                observation_space={aid: base.get_observation_space(aid) for aid in agents},
                action_space={aid: base.get_action_space(aid) for aid in agents},
                agent_to_module_mapping_fn=mapping,
            )
            episode.add_env_reset(observations=observation, infos=infos)
            shared_data: dict[str, Any] = {}
            while not episode.is_done:
                batch = env_to_module(
                    episodes=[episode], rl_module=multi_module, explore=False, shared_data=shared_data
                )
                rows = shared_data.get("memorized_map_structure") or {}
                for mid, keys in rows.items():
                    acted[str(mid)].update(str(agent) for _, agent in keys)
                if not batch or not rows:
                    raise CLIError(
                        f"episode {index}: the env-to-module connectors mapped no acting agent to a "
                        "module (no AgentToModuleMapping output), though the episode is not done; "
                        "rllib-saliency rolls out multi-agent checkpoints through RLlib's default "
                        "multi-agent connectors; pass --obs FILE."
                    )
                if module_id in batch:
                    keys = rows.get(module_id) or []
                    n = len(keys)
                    observations.append(_module_rows(batch[module_id], module, module_id, stateful, n))
                    if stateful:  # the state each row's step is taken in
                        states.append(_module_states(batch[module_id], initial, module_id, n))
                    recorded = [agent for _, agent in keys]
                else:
                    recorded = []
                outputs = multi_module.forward_inference(batch)
                to_env = module_to_env(
                    batch=outputs,
                    episodes=[episode],
                    rl_module=multi_module,
                    explore=False,
                    shared_data=shared_data,
                )
                agent_actions = to_env.pop(Columns.ACTIONS)[0]
                env_actions = to_env.pop(Columns.ACTIONS_FOR_ENV, [agent_actions])[0]
                extra_model_outputs: dict[Any, dict[str, Any]] = defaultdict(dict)
                for column, per_episode in to_env.items():
                    for agent, value in per_episode[0].items():
                        extra_model_outputs[agent][column] = value
                for agent in recorded:
                    actions.append(np.asarray(agent_actions[agent]))
                    episode_ids.append(index)
                    agent_ids.append(str(agent))
                observation, rewards, terminateds, truncateds, infos = env.step(env_actions)
                episode.add_env_step(
                    observations=observation,
                    actions=agent_actions,
                    rewards=rewards,
                    infos=infos,
                    terminateds=terminateds,
                    truncateds=truncateds,
                    # STATE_OUT included: the next step's STATE_IN (AddStatesFromEpisodesToBatch).
                    extra_model_outputs=dict(extra_model_outputs),
                )
            bar.update(1)
    finally:
        env.close()
    if not observations:
        mapped = "; ".join(f"{mid!r}: agents {sorted(agents)}" for mid, agents in sorted(acted.items()))
        raise CLIError(
            f"--policy {module_id!r}: no agent acted with module {module_id!r} in the {episodes} "
            f"episode(s) rolled out (policy_mapping_fn mapped {mapped or 'no agents'}); choose a module "
            "id that agents are mapped to, or pass --obs FILE."
        )
    rollouts = collect(
        [np.concatenate(observations)],
        [np.stack(actions)],
        [np.asarray(episode_ids, np.int64)],
        episodes,
        module_id,
        [[np.concatenate(leaf) for leaf in zip(*states, strict=True)]] if states else [],
    )
    rollouts.agent_ids = np.asarray(agent_ids)
    return rollouts


def play_new_stack(
    checkpoint: Any, module: Any, episodes: int, seed: int, max_steps: int | None, bar: Any
) -> list[EpisodeRecord]:
    """Greedy episodes of a new-API-stack module through the checkpoint's env-to-module and
    module-to-env connectors, as :func:`rollout_new_stack` plays them."""
    env_to_module, module_to_env = load_connectors(checkpoint)
    env = make_env(checkpoint.config)
    return play_new_stack_episodes(
        env, env_to_module, module_to_env, module, checkpoint.policy_id, episodes, seed, max_steps, bar
    )


def play_new_stack_episodes(
    env: Any,
    env_to_module: Any,
    module_to_env: Any,
    module: Any,
    module_id: str,
    episodes: int,
    seed: int,
    max_steps: int | None,
    bar: Any = None,
) -> list[EpisodeRecord]:
    """Greedy episodes of a new-API-stack module in ``env`` (closed at the end) through the given
    connector pipelines: a checkpoint's (``play_new_stack``) or, during training, copies of the
    driver's env runner's (``stacks/new/training.py``), played by
    :func:`play_module_episode`. ``bar``: a progress bar or None."""
    from ray.rllib.env.multi_agent_env import MultiAgentEnv

    from rllib_saliency.movie.rollout import record_episodes

    if isinstance(env, MultiAgentEnv):
        env.close()
        raise CLIError("movies of multi-agent environments are not supported yet.")

    def play(index: int, capture: Callable[[], None]) -> PlayedEpisode:
        return play_module_episode(
            env, env_to_module, module_to_env, module, module_id, seed + index, max_steps, capture
        )

    vector = len(tuple(module.observation_space.shape or ())) != 3
    return record_episodes(env, vector, episodes, play, "module", bar)
