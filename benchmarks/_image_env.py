"""A small synthetic image env with Atari's observation shape, for the callback benchmark.

84x84x4 float32 frames in [0, 1] (a stack of the last four, scaled as Atari preprocessing scales
them; RLlib's torch CNN takes float input): a bright 8x8 square drifts left and right; the reward
is for the action pointing toward it. Cheap to step, so an iteration's time is PPO's
CNN work and the callback's, not an emulator's.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

SIZE, SQUARE = 84, 8


class AtariShapedEnv(gym.Env):
    def __init__(self, config: Any = None) -> None:
        self.observation_space = gym.spaces.Box(0.0, 1.0, (SIZE, SIZE, 4), np.float32)
        self.action_space = gym.spaces.Discrete(3)
        self._rng = np.random.default_rng(0)
        self._t = 0
        self._x = 0

    def _frame(self) -> np.ndarray:
        frame = np.full((SIZE, SIZE), 0.1, np.float32)
        frame[38 : 38 + SQUARE, self._x : self._x + SQUARE] = 1.0
        return frame

    def _obs(self) -> np.ndarray:
        return np.stack(self._frames, axis=-1)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._t = 0
        self._x = int(self._rng.integers(0, SIZE - SQUARE))
        self._frames = [self._frame()] * 4
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        toward = 0 if self._x < SIZE // 2 - SQUARE else 2 if self._x > SIZE // 2 else 1
        reward = float(action == toward)
        self._x = int(np.clip(self._x + self._rng.integers(-4, 5), 0, SIZE - SQUARE))
        self._frames = [*self._frames[1:], self._frame()]
        self._t += 1
        return self._obs(), reward, False, self._t >= 100, {}
