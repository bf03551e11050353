"""Small environments with the observation and action kinds users train on.

Rewards depend on the observation, so a policy has something to learn; episodes
are short so a training iteration takes seconds.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class DictObservationEnv(gym.Env):
    """Dict(pos: Box(2), vel: Box(3), inventory: Discrete(3)); reward for action == (pos[0] > 0)."""

    def __init__(self, config=None):
        self.observation_space = gym.spaces.Dict(
            {
                "pos": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
                "vel": gym.spaces.Box(-1.0, 1.0, (3,), np.float32),
                "inventory": gym.spaces.Discrete(3),
            }
        )
        self.action_space = gym.spaces.Discrete(2)
        self._rng = np.random.default_rng(0)
        self._t = 0

    def _observe(self):
        self._obs = {
            "pos": self._rng.uniform(-1, 1, 2).astype(np.float32),
            "vel": self._rng.uniform(-1, 1, 3).astype(np.float32),
            "inventory": int(self._rng.integers(3)),
        }
        return self._obs

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._t = 0
        return self._observe(), {}

    def step(self, action):
        reward = float(action == int(self._obs["pos"][0] > 0))
        self._t += 1
        return self._observe(), reward, False, self._t >= 20, {}


class MultiDiscreteEnv(gym.Env):
    """MultiDiscrete([3, 4]) observations and MultiDiscrete([2, 3]) actions."""

    def __init__(self, config=None):
        self.observation_space = gym.spaces.MultiDiscrete([3, 4])
        self.action_space = gym.spaces.MultiDiscrete([2, 3])
        self._rng = np.random.default_rng(0)
        self._t = 0

    def reset(self, *, seed=None, options=None):
        self._t = 0
        self._obs = self._rng.integers([3, 4])
        return self._obs, {}

    def step(self, action):
        reward = float(action[0] == self._obs[0] % 2) + float(action[1] == self._obs[1] % 3)
        self._t += 1
        self._obs = self._rng.integers([3, 4])
        return self._obs, reward, False, self._t >= 20, {}


class ImageEnv(gym.Env):
    """42×42×4 uint8 frames (a frame stack): a bright square moves; reward for moving toward it."""

    def __init__(self, config=None):
        self.observation_space = gym.spaces.Box(0, 255, (42, 42, 4), np.uint8)
        self.action_space = gym.spaces.Discrete(2)
        self._rng = np.random.default_rng(0)
        self._t = 0

    def _frame(self):
        frame = np.zeros((42, 42), np.uint8)
        frame[10:16, self._x : self._x + 6] = 255
        return frame

    def reset(self, *, seed=None, options=None):
        self._t = 0
        self._x = int(self._rng.integers(0, 36))
        self._frames = [self._frame()] * 4
        return np.stack(self._frames, axis=-1), {}

    def step(self, action):
        reward = float(action == int(self._x > 18))
        self._x = int(np.clip(self._x + self._rng.integers(-3, 4), 0, 36))
        self._frames = self._frames[1:] + [self._frame()]
        self._t += 1
        return np.stack(self._frames, axis=-1), reward, False, self._t >= 20, {}


class DictImageEnv(gym.Env):
    """Dict(camera: Box(16, 16, 1) in [0, 1], pos: Box(2)): RLlib's complex input net.
    Reward for action == (bright spot in the camera's right half)."""

    def __init__(self, config=None):
        self.observation_space = gym.spaces.Dict(
            {
                "camera": gym.spaces.Box(0.0, 1.0, (16, 16, 1), np.float32),
                "pos": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
            }
        )
        self.action_space = gym.spaces.Discrete(2)
        self._rng = np.random.default_rng(0)
        self._t = 0

    def _observe(self):
        camera = np.zeros((16, 16, 1), np.float32)
        self._x = int(self._rng.integers(0, 14))
        camera[6:9, self._x : self._x + 3, 0] = 1.0
        return {"camera": camera, "pos": self._rng.uniform(-1, 1, 2).astype(np.float32)}

    def reset(self, *, seed=None, options=None):
        self._t = 0
        return self._observe(), {}

    def step(self, action):
        reward = float(action == int(self._x >= 7))
        self._t += 1
        return self._observe(), reward, False, self._t >= 20, {}


def env_observations(env: str, n: int, seed: int = 0) -> np.ndarray:
    """``n`` real observations of the registered env ``env``, acting at random (the model is
    explained at these rows, not evaluated by them), as float32 rows; the same on either stack."""
    environment = gym.make(env)
    environment.action_space.seed(seed)
    obs, _ = environment.reset(seed=seed)
    rows = []
    while len(rows) < n:
        rows.append(obs)
        obs, _, terminated, truncated, _ = environment.step(environment.action_space.sample())
        if terminated or truncated:
            obs, _ = environment.reset()
    return np.asarray(rows, np.float32)
