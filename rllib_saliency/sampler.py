"""A uniform reservoir sample of observations (and the actions taken), bounded in memory."""

from __future__ import annotations

import numpy as np


class ReservoirSampler:
    """Keeps a uniform sample of at most ``capacity`` rows of everything added since the last drain.

    Algorithm R (Vitter 1985), vectorised per batch: memory is ``capacity``
    rows whatever the batch sizes. Rows whose observation is not finite are
    skipped and counted.
    """

    def __init__(self, capacity: int, seed: int | list[int] = 0) -> None:
        self.capacity = capacity
        self._rng = np.random.default_rng(seed)
        self._obs: np.ndarray | None = None
        self._actions: np.ndarray | None = None
        self._extras: list[np.ndarray] = []
        self.seen = 0  # finite rows offered since the last drain
        self.skipped_nonfinite = 0  # since creation

    def __len__(self) -> int:
        return min(self.seen, self.capacity)

    def add(self, obs: np.ndarray, actions: np.ndarray, extras: tuple[np.ndarray, ...] = ()) -> None:
        """Offer rows; ``extras`` are more per-row arrays kept with them (e.g. recurrent states)."""
        obs = np.asarray(obs)
        actions = np.asarray(actions)
        finite = np.all(np.isfinite(obs.reshape(len(obs), -1)), axis=1)
        self.skipped_nonfinite += int(np.count_nonzero(~finite))
        obs, actions = obs[finite], actions[finite]
        extras = tuple(np.asarray(e)[finite] for e in extras)
        if self._obs is None:
            self._obs = np.empty((self.capacity, *obs.shape[1:]), obs.dtype)
            self._actions = np.empty((self.capacity, *actions.shape[1:]), actions.dtype)
            self._extras = [np.empty((self.capacity, *e.shape[1:]), e.dtype) for e in extras]
        # Fill the free slots first, then replace: row number t (0-based) is kept
        # with probability capacity / (t + 1), in a uniformly chosen slot.
        free = max(0, min(self.capacity - self.seen, len(obs)))
        self._obs[self.seen : self.seen + free] = obs[:free]
        self._actions[self.seen : self.seen + free] = actions[:free]
        for kept, extra in zip(self._extras, extras, strict=True):
            kept[self.seen : self.seen + free] = extra[:free]
        positions = self.seen + np.arange(free, len(obs))
        slots = (self._rng.random(len(positions)) * (positions + 1)).astype(np.int64)
        keep = slots < self.capacity
        # Later rows overwrite earlier ones in the same slot, as sequential Algorithm R does.
        for row, slot in zip(np.flatnonzero(keep) + free, slots[keep], strict=True):
            self._obs[slot] = obs[row]
            self._actions[slot] = actions[row]
            for kept, extra in zip(self._extras, extras, strict=True):
                kept[slot] = extra[row]
        self.seen += len(obs)

    def drain(self) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]] | None:
        """``(obs, actions, extras)`` sampled so far (copies), and start anew; None when empty."""
        if not len(self):
            return None
        n = len(self)
        sample = self._obs[:n].copy(), self._actions[:n].copy(), tuple(e[:n].copy() for e in self._extras)
        self.seen = 0
        return sample
