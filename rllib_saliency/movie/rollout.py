"""Greedy episodes recorded for a movie: observations, actions, rewards and the env's own frames.

The loops mirror the CLI's rollouts (``cli/rollout.py`` for old-API-stack policies,
``cli/new_stack_rollout.py`` for new-API-stack modules through the checkpoint's
connectors) and reuse their environment creation, preprocessing and connector
code; they also keep each step's reward, stop after ``max_steps`` steps, and, for
vector observations, the environment's ``rgb_array`` rendering of the state the
policy acted on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class EpisodeRecord:
    """One greedy episode, step by step (``T`` steps)."""

    observations: np.ndarray  # (T, *obs_shape): what the policy/module saw
    actions: np.ndarray  # (T, ...) the actions taken (greedy)
    rewards: np.ndarray  # (T,) the reward each step earned
    frames: np.ndarray | None = None  # (T, H, W, 3) uint8: the env's rendering, if any
    states: tuple[np.ndarray, ...] = ()  # recurrent models: the state each step was taken in
    truncated_by_max_steps: bool = False
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.observations)


def _record(
    observations: list, actions: np.ndarray, rewards: list, states: list, recorder: Any, cut: bool
) -> EpisodeRecord:
    """One played episode's steps (both stacks' rollouts) as an :class:`EpisodeRecord`."""
    return EpisodeRecord(
        observations=np.stack(observations),
        actions=actions,
        rewards=np.asarray(rewards, np.float32),
        frames=recorder.take(len(observations)),
        states=tuple(np.stack(leaf) for leaf in zip(*states, strict=True)) if states else (),
        truncated_by_max_steps=cut,
        notes=list(dict.fromkeys(recorder.notes)),
    )


def enable_rendering(env: Any) -> bool:
    """Switch ``env`` to ``render_mode="rgb_array"`` where it supports it; whether it renders."""
    base = env.unwrapped
    if getattr(env, "render_mode", None) == "rgb_array":
        return True
    if "rgb_array" not in (getattr(base, "metadata", None) or {}).get("render_modes", ()):
        return False
    # pygame-rendered envs (classic control): no sound card or display needed.
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    base.render_mode = "rgb_array"
    return True


def _render(env: Any, notes: list[str]) -> np.ndarray | None:
    try:
        frame = env.render()
    except Exception as error:  # noqa: BLE001 - an env that cannot render gives a movie without frames
        notes.append(
            f"the environment could not render a frame ({type(error).__name__}: {error}); "
            "the movie shows the attributions only."
        )
        return None
    frame = np.asarray(frame) if frame is not None else None
    if frame is None or frame.ndim != 3 or frame.shape[-1] not in (3, 4):
        notes.append(
            "the environment's rgb_array rendering is not an (H, W, 3) image; the movie shows "
            "the attributions only."
        )
        return None
    return np.ascontiguousarray(frame[..., :3]).astype(np.uint8)


class _FrameRecorder:
    """Renders the env each step until the first failure (then stops, with a note)."""

    def __init__(self, env: Any, wanted: bool) -> None:
        self.env = env
        self.on = wanted and enable_rendering(env)
        self.frames: list[np.ndarray] = []
        self.notes: list[str] = []
        if wanted and not self.on:
            self.notes.append(
                "the environment has no rgb_array rendering; the movie shows the attributions only."
            )

    def capture(self) -> None:
        if not self.on:
            return
        frame = _render(self.env, self.notes)
        if frame is None or (self.frames and frame.shape != self.frames[0].shape):
            self.on = False
            self.frames = []
            return
        self.frames.append(frame)

    def take(self, steps: int) -> np.ndarray | None:
        frames, self.frames = self.frames, []
        return np.stack(frames) if self.on and len(frames) == steps and steps else None


def play_old_stack(
    policy: Any, config: dict[str, Any], episodes: int, seed: int, max_steps: int | None, bar: Any = None
) -> list[EpisodeRecord]:
    """Greedy episodes of an old-API-stack policy, as ``cli.rollout.rollout_policy`` plays them
    (Atari DeepMind wrapping, preprocessors, action unsquashing/clipping); episode ``k`` is reset
    with seed ``seed + k``."""
    from ray.rllib.env.multi_agent_env import MultiAgentEnv
    from ray.rllib.env.wrappers.atari_wrappers import is_atari, wrap_deepmind
    from ray.rllib.models import ModelCatalog
    from ray.rllib.utils.spaces.space_utils import clip_action, unsquash_action

    from rllib_saliency.cli.errors import CLIError
    from rllib_saliency.cli.rollout import make_env
    from rllib_saliency.recurrent import initial_states, next_step_inputs, recurrent_layout

    if config.get("observation_filter", "NoFilter") != "NoFilter":
        raise CLIError(
            f"the policy was trained with observation_filter={config['observation_filter']!r}; movies "
            "play episodes with the policy's weights only, and its filter state would be missing."
        )
    env = make_env(config)
    if isinstance(env, MultiAgentEnv):
        raise CLIError("movies of multi-agent environments are not supported yet.")
    model_config = config.get("model") or {}
    preprocessor = None
    vector = len(tuple(policy.observation_space.shape)) != 3
    recorder = _FrameRecorder(env, wanted=vector)
    if is_atari(env) and config.get("preprocessor_pref", "deepmind") == "deepmind":
        env = wrap_deepmind(
            env,
            dim=model_config.get("dim"),
            framestack=model_config.get("framestack") is True,
            noframeskip=(config.get("env_config") or {}).get("frameskip", 0) == 1,
        )
    elif config.get("preprocessor_pref", "deepmind") is not None:
        preprocessor = ModelCatalog.get_preprocessor_for_space(env.observation_space, model_config)
    recorder.env = env
    layout = recurrent_layout(policy)
    records = []
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + episode)
            inputs = [s[0] for s in initial_states(policy, 1)]
            observations, actions, rewards, states = [], [], [], []
            finished = cut = False
            while not finished:
                if max_steps is not None and len(observations) >= max_steps:
                    cut = True
                    break
                seen = preprocessor.transform(obs) if preprocessor is not None else np.asarray(obs)
                recorder.capture()
                state, previous = layout.split(inputs) if inputs else ([], {})
                action, state_out, _ = policy.compute_single_action(
                    seen,
                    state=state or None,
                    prev_action=previous.get("prev_actions"),
                    prev_reward=previous.get("prev_rewards"),
                    explore=False,
                )
                observations.append(np.asarray(seen, np.float32))
                actions.append(action)
                if inputs:
                    states.append(inputs)
                if config.get("normalize_actions", True):
                    env_action = unsquash_action(action, policy.action_space_struct)
                elif config.get("clip_actions", False):
                    env_action = clip_action(action, policy.action_space_struct)
                else:
                    env_action = action
                obs, reward, terminated, truncated, _ = env.step(env_action)
                rewards.append(float(reward))
                finished = terminated or truncated
                if inputs:
                    inputs = next_step_inputs(layout, inputs, state_out, action, reward)
            if not observations:
                raise CLIError(f"episode {episode} ended before the policy acted.")
            records.append(_record(observations, np.asarray(actions), rewards, states, recorder, cut))
            if bar is not None:
                bar.update(1)
    finally:
        env.close()
    return records


def play_new_stack(
    checkpoint: Any, module: Any, episodes: int, seed: int, max_steps: int | None, bar: Any
) -> list[EpisodeRecord]:
    """Greedy episodes of a new-API-stack module through the checkpoint's env-to-module and
    module-to-env connectors, as ``cli.new_stack_rollout.rollout_new_stack`` plays them."""
    from rllib_saliency.cli.new_stack_rollout import load_connectors, make_env

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
    driver's env runner's (``stacks/new.py``). ``bar``: a progress bar or None."""
    from ray.rllib.core.columns import Columns
    from ray.rllib.env.multi_agent_env import MultiAgentEnv
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    from rllib_saliency.cli.errors import CLIError
    from rllib_saliency.cli.new_stack_rollout import _module_input, _module_state

    stateful = module.is_stateful()
    initial = module.get_initial_state() if stateful else None
    vector = len(tuple(module.observation_space.shape or ())) != 3
    recorder = _FrameRecorder(env, wanted=vector)
    records = []
    try:
        if isinstance(env, MultiAgentEnv):
            raise CLIError("movies of multi-agent environments are not supported yet.")
        for index in range(episodes):
            observation, infos = env.reset(seed=seed + index)
            episode = SingleAgentEpisode(
                observations=[observation],
                infos=[infos],
                observation_space=env.observation_space,
                action_space=env.action_space,
            )
            shared_data: dict[str, Any] = {}
            observations, actions, rewards, states = [], [], [], []
            cut = False
            while not episode.is_done:
                if max_steps is not None and len(observations) >= max_steps:
                    cut = True
                    break
                batch = env_to_module(
                    episodes=[episode], rl_module=module, explore=False, shared_data=shared_data
                )
                recorder.capture()
                observations.append(np.asarray(_module_input(batch, module, module_id, stateful), np.float32))
                if stateful:
                    states.append(_module_state(batch, initial, module_id))
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
                    extra_model_outputs={key: value[0] for key, value in to_env.items()},
                )
                actions.append(np.asarray(action))
                rewards.append(float(reward))
            if not observations:
                raise CLIError(f"episode {index} ended before the module acted.")
            records.append(_record(observations, np.stack(actions), rewards, states, recorder, cut))
            if bar is not None:
                bar.update(1)
    finally:
        env.close()
    return records
