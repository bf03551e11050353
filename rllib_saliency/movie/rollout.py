"""Greedy episodes recorded for a movie: observations, actions, rewards and the env's own frames.

The episodes are played by the stacks' loops (``stacks/old/rollout.py`` for old-API-stack
policies, ``stacks/new/rollout.py`` for new-API-stack modules through the
checkpoint's connectors), stopped after ``max_steps`` steps; this module adds, for
vector observations, the environment's ``rgb_array`` rendering of each state the
policy acted on (:class:`FrameRecorder`), and turns each episode into an :class:`EpisodeRecord`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
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


def record_episode(played: Any, recorder: FrameRecorder) -> EpisodeRecord:
    """One played episode (either stack's loop: a ``stacks.rollout.PlayedEpisode``) and its rendered
    frames as an :class:`EpisodeRecord`."""
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


class FrameRecorder:
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


def record_episodes(
    env: Any,
    vector: bool,
    episodes: int,
    play: Callable[[int, Callable[[], None]], Any],
    player: str,
    bar: Any = None,
) -> list[EpisodeRecord]:
    """``episodes`` episodes of ``play(index, capture)`` (a stack's greedy episode in ``env``,
    calling ``capture`` after each step), each recorded with its frames (the env's rendering
    beside ``vector`` observations); ``env`` is closed at the end. ``player`` names who acts in
    the error of an episode that ends before it acted. ``bar``: a progress bar or None."""
    from rllib_saliency.errors import CLIError

    recorder = FrameRecorder(env, wanted=vector)
    records = []
    try:
        for index in range(episodes):
            played = play(index, recorder.capture)
            if not played.observations:
                raise CLIError(f"episode {index} ended before the {player} acted.")
            records.append(record_episode(played, recorder))
            if bar is not None:
                bar.update(1)
    finally:
        env.close()
    return records
