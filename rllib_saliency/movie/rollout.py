"""Greedy episodes recorded for a movie: observations, actions, rewards and the env's own frames.

The episodes are played by the CLI's loops (``cli/rollout.py`` for old-API-stack
policies, ``cli/new_stack_rollout.py`` for new-API-stack modules through the
checkpoint's connectors), stopped after ``max_steps`` steps; this module adds, for
vector observations, the environment's ``rgb_array`` rendering of each state the
policy acted on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from rllib_saliency.cli.rollout import PlayedEpisode


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


def _record(played: PlayedEpisode, recorder: _FrameRecorder) -> EpisodeRecord:
    """One played episode (either stack's loop) and its rendered frames as an :class:`EpisodeRecord`."""
    return EpisodeRecord(
        observations=np.stack(played.observations),
        actions=np.stack([np.asarray(a) for a in played.actions]),
        rewards=np.asarray(played.rewards, np.float32),
        frames=recorder.take(len(played)),
        states=tuple(np.stack(leaf) for leaf in zip(*played.states, strict=True)) if played.states else (),
        truncated_by_max_steps=played.cut,
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
    """Greedy episodes of an old-API-stack policy, played by the CLI's loop
    (``cli.rollout.play_policy_episode``: Atari DeepMind wrapping, preprocessors, action
    unsquashing/clipping); episode ``k`` is reset with seed ``seed + k``."""
    from ray.rllib.env.multi_agent_env import MultiAgentEnv

    from rllib_saliency.cli.errors import CLIError
    from rllib_saliency.cli.rollout import make_env, play_policy_episode, policy_env

    if config.get("observation_filter", "NoFilter") != "NoFilter":
        raise CLIError(
            f"the policy was trained with observation_filter={config['observation_filter']!r}; movies "
            "play episodes with the policy's weights only, and its filter state would be missing."
        )
    env = make_env(config)
    if isinstance(env, MultiAgentEnv):
        raise CLIError("movies of multi-agent environments are not supported yet.")
    env, preprocessor = policy_env(config, env)
    vector = len(tuple(policy.observation_space.shape)) != 3
    recorder = _FrameRecorder(env, wanted=vector)
    records = []
    try:
        for episode in range(episodes):
            played = play_policy_episode(
                policy, config, env, preprocessor, seed + episode, max_steps, recorder.capture
            )
            if not played.observations:
                raise CLIError(f"episode {episode} ended before the policy acted.")
            records.append(_record(played, recorder))
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
    driver's env runner's (``stacks/new.py``), played by the CLI's loop
    (``cli.new_stack_rollout.play_module_episode``). ``bar``: a progress bar or None."""
    from ray.rllib.env.multi_agent_env import MultiAgentEnv

    from rllib_saliency.cli.errors import CLIError
    from rllib_saliency.cli.new_stack_rollout import play_module_episode

    vector = len(tuple(module.observation_space.shape or ())) != 3
    recorder = _FrameRecorder(env, wanted=vector)
    records = []
    try:
        if isinstance(env, MultiAgentEnv):
            raise CLIError("movies of multi-agent environments are not supported yet.")
        for index in range(episodes):
            played = play_module_episode(
                env,
                env_to_module,
                module_to_env,
                module,
                module_id,
                seed + index,
                max_steps,
                recorder.capture,
            )
            if not played.observations:
                raise CLIError(f"episode {index} ended before the module acted.")
            records.append(_record(played, recorder))
            if bar is not None:
                bar.update(1)
    finally:
        env.close()
    return records
