"""Greedy rollouts of an old-API-stack policy: the observations (and recurrent step inputs) it
acted on, for the CLI's rows and for movies (``play_old_stack``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from rllib_saliency.errors import CLIError
from rllib_saliency.stacks.checkpoint import check_environment, env_error
from rllib_saliency.stacks.rollout import PlayedEpisode, Rollouts, collect, from_played

if TYPE_CHECKING:
    from rllib_saliency.movie.rollout import EpisodeRecord


def rollout_algorithm(worker: Any, policy_id: str, episodes: int, bar: Any) -> Rollouts:
    """Whole greedy episodes from the algorithm's own env runner (its env, preprocessing, filters):
    ``worker`` is that ``RolloutWorker`` (``algorithm.env_runner``, or built alone)."""
    from rllib_saliency.stacks.old.batches import per_step_states

    policy = worker.get_policy(policy_id)
    recurrent = policy.is_recurrent()
    observations, actions, episode_ids, states = [], [], [], []
    done = 0
    while done < episodes:
        batches = worker.sample().as_multi_agent().policy_batches
        # The episodes in this sample, in order of appearance (complete_episodes mode).
        ids = list(dict.fromkeys(int(e) for b in batches.values() for e in np.asarray(b["eps_id"])))
        keep = ids[: episodes - done]
        batch = batches.get(policy_id)
        if batch is not None:
            rows = np.isin(np.asarray(batch["eps_id"]).astype(np.int64), keep)
            observations.append(np.asarray(batch["obs"])[rows])
            actions.append(np.asarray(batch["actions"])[rows])
            episode_ids.append(np.asarray(batch["eps_id"])[rows].astype(np.int64))
            if recurrent:
                states.append([state[rows] for state in per_step_states(batch, policy)])
        done += len(keep)
        bar.update(len(keep))
    return collect(observations, actions, episode_ids, done, policy_id, states)


def make_env(config: dict[str, Any]) -> Any:
    """The policy's environment as RLlib would create it for a local env runner."""
    import gymnasium as gym
    from ray.rllib.env.env_context import EnvContext
    from ray.rllib.env.utils import _gym_env_creator
    from ray.rllib.utils.from_config import from_config
    from ray.tune.registry import ENV_CREATOR, _global_registry

    check_environment(config)
    env = config.get("env")
    context = EnvContext(dict(config.get("env_config") or {}), worker_index=0, num_workers=0)
    try:
        if isinstance(env, str) and _global_registry.contains(ENV_CREATOR, env):
            return _global_registry.get(ENV_CREATOR, env)(context)
        if isinstance(env, str) and "." in env and ":" not in env and "/" not in env:
            return from_config(env, context)
        if isinstance(env, type) and not issubclass(env, gym.Env):
            return env(context)
        return _gym_env_creator(context, env_descriptor=env)
    except (gym.error.Error, ValueError, ImportError) as error:
        raise env_error(config, error) from error


def policy_env(config: dict[str, Any], env: Any) -> tuple[Any, Any]:
    """``env`` as RLlib's local env runner sees it: Atari DeepMind wrapping, or the
    preprocessor the policy's observations go through (None if neither applies)."""
    from ray.rllib.env.wrappers.atari_wrappers import is_atari, wrap_deepmind
    from ray.rllib.models import ModelCatalog

    model_config = config.get("model") or {}
    if is_atari(env) and config.get("preprocessor_pref", "deepmind") == "deepmind":
        wrapped = wrap_deepmind(
            env,
            dim=model_config.get("dim"),
            framestack=model_config.get("framestack") is True,
            noframeskip=(config.get("env_config") or {}).get("frameskip", 0) == 1,
        )
        return wrapped, None
    if config.get("preprocessor_pref", "deepmind") is not None:
        return env, ModelCatalog.get_preprocessor_for_space(env.observation_space, model_config)
    return env, None


def play_policy_episode(
    policy: Any,
    config: dict[str, Any],
    env: Any,
    preprocessor: Any,
    seed: int,
    max_steps: int | None = None,
    before_step: Callable[[], None] | None = None,
) -> PlayedEpisode:
    """One greedy episode of an old-API-stack policy in ``env`` (from :func:`policy_env`),
    reset with ``seed``, in a loop that mirrors RLlib's local env runner: preprocessing,
    recurrent state and previous action/reward, action unsquashing/clipping.
    ``before_step`` runs before each step (e.g. a movie renders the state acted on)."""
    from ray.rllib.utils.spaces.space_utils import clip_action, unsquash_action

    from rllib_saliency.recurrent import initial_states, next_step_inputs, recurrent_layout

    layout = recurrent_layout(policy)
    played = PlayedEpisode()
    obs, _ = env.reset(seed=seed)
    # The step inputs besides the observation: [] unless the model is recurrent.
    inputs = [s[0] for s in initial_states(policy, 1)]
    finished = False
    while not finished:
        if max_steps is not None and len(played) >= max_steps:
            played.cut = True
            break
        seen = preprocessor.transform(obs) if preprocessor is not None else np.asarray(obs)
        if before_step is not None:
            before_step()
        state, previous = layout.split(inputs) if inputs else ([], {})
        action, state_out, _ = policy.compute_single_action(
            seen,
            state=state or None,
            prev_action=previous.get("prev_actions"),
            prev_reward=previous.get("prev_rewards"),
            explore=False,
        )
        played.observations.append(np.asarray(seen, np.float32))
        played.actions.append(action)
        if inputs:
            played.states.append(inputs)
        if config.get("normalize_actions", True):
            env_action = unsquash_action(action, policy.action_space_struct)
        elif config.get("clip_actions", False):
            env_action = clip_action(action, policy.action_space_struct)
        else:
            env_action = action
        obs, reward, terminated, truncated, _ = env.step(env_action)
        played.rewards.append(float(reward))
        finished = terminated or truncated
        if inputs:
            inputs = next_step_inputs(layout, inputs, state_out, action, reward)
    return played


def rollout_policy(policy: Any, config: dict[str, Any], episodes: int, seed: int, bar: Any) -> Rollouts:
    """Greedy episodes with a policy restored from a policy checkpoint (:func:`play_policy_episode`),
    episode ``k`` reset with seed ``seed + k``."""
    from ray.rllib.env.multi_agent_env import MultiAgentEnv

    if config.get("observation_filter", "NoFilter") != "NoFilter":
        raise CLIError(
            f"the policy was trained with observation_filter={config['observation_filter']!r}, whose "
            "state a policy checkpoint does not hold; use the algorithm checkpoint, or --obs FILE with "
            "filtered observations."
        )
    env = make_env(config)
    if isinstance(env, MultiAgentEnv):
        raise CLIError(
            "rolling out a multi-agent environment needs the algorithm checkpoint, not a policy one."
        )
    env, preprocessor = policy_env(config, env)
    played = []
    try:
        for episode in range(episodes):
            played.append(play_policy_episode(policy, config, env, preprocessor, seed + episode))
            bar.update(1)
    finally:
        env.close()
    return from_played(played, str(policy.config.get("__policy_id") or "default_policy"))


def greedy_actions(policy: Any, obs: np.ndarray, states: tuple[np.ndarray, ...] = ()) -> np.ndarray:
    """The policy's greedy actions at ``obs`` (recurrent models: from their initial state, whatever
    ``states`` holds, as the CLI has always computed them)."""
    from ray.rllib.policy.sample_batch import SampleBatch

    from rllib_saliency.recurrent import initial_states, recurrent_layout

    names = recurrent_layout(policy).names
    actions = []
    for start in range(0, len(obs), 1024):
        rows = obs[start : start + 1024]
        # An input dict, not compute_actions(state_batches=...): in Ray 2.60 the eager
        # policies' compute_actions drops the state batches.
        batch = {"obs": rows, **dict(zip(names, initial_states(policy, len(rows)), strict=True))}
        if names:
            batch["seq_lens"] = np.ones(len(rows), np.int32)
        actions.append(policy.compute_actions_from_input_dict(SampleBatch(batch), explore=False)[0])
    return np.concatenate(actions)


def play_old_stack(
    policy: Any, config: dict[str, Any], episodes: int, seed: int, max_steps: int | None, bar: Any = None
) -> list[EpisodeRecord]:
    """Greedy episodes of an old-API-stack policy for a movie, played by
    :func:`play_policy_episode` (Atari DeepMind wrapping, preprocessors, action
    unsquashing/clipping); episode ``k`` is reset with seed ``seed + k``."""
    from ray.rllib.env.multi_agent_env import MultiAgentEnv

    from rllib_saliency.movie.rollout import record_episodes

    if config.get("observation_filter", "NoFilter") != "NoFilter":
        raise CLIError(
            f"the policy was trained with observation_filter={config['observation_filter']!r}; movies "
            "play episodes with the policy's weights only, and its filter state would be missing."
        )
    env = make_env(config)
    if isinstance(env, MultiAgentEnv):
        raise CLIError("movies of multi-agent environments are not supported yet.")
    env, preprocessor = policy_env(config, env)

    def play(index: int, capture: Callable[[], None]) -> PlayedEpisode:
        return play_policy_episode(policy, config, env, preprocessor, seed + index, max_steps, capture)

    vector = len(tuple(policy.observation_space.shape)) != 3
    return record_episodes(env, vector, episodes, play, "policy", bar)
