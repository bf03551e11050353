"""Map attributions over RLlib's flattened observation back to the original space.

RLlib's preprocessors flatten ``Dict``/``Tuple`` observations (Dict keys in
gymnasium's sorted order) and one-hot encode ``Discrete``/``MultiDiscrete`` ones
before the model sees them, so the policy's observations are one flat vector.
A :class:`Component` is one named part of the original observation and the
columns it occupies in that vector:

- a scalar ``Box`` element: one column (``position.0``);
- a ``Discrete`` value (or one ``MultiDiscrete`` entry): its one-hot columns;
  its attribution is the one of the slot that was active;
- a multi-dimensional ``Box`` inside a Dict/Tuple (an image beside a vector): all its
  columns, reported as their mean |attribution|.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np


@dataclass(frozen=True)
class Component:
    name: str
    start: int
    stop: int
    kind: Literal["element", "one_hot", "block"]
    top_key: str  # the first level of the path, for share/{key} scalars
    shape: tuple[int, ...] = ()  # blocks: the original shape (an image's (H, W, C))


def original_space(policy_space: gym.Space) -> gym.Space:
    return getattr(policy_space, "original_space", None) or policy_space


def is_structured(space: gym.Space) -> bool:
    """Whether RLlib flattened or one-hot encoded the observation (so components matter)."""
    return isinstance(
        space, (gym.spaces.Dict, gym.spaces.Tuple, gym.spaces.Discrete, gym.spaces.MultiDiscrete)
    )


def components(space: gym.Space) -> list[Component]:
    """The components of a (possibly nested) original observation space, in RLlib's flat order."""
    result: list[Component] = []
    _walk(space, "", result, 0, top_key=None)
    return result


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _walk(space: gym.Space, prefix: str, out: list[Component], offset: int, top_key: str | None) -> int:
    if isinstance(space, gym.spaces.Dict):
        for key, sub in space.spaces.items():
            offset = _walk(sub, _join(prefix, str(key)), out, offset, top_key or str(key))
        return offset
    if isinstance(space, gym.spaces.Tuple):
        for index, sub in enumerate(space.spaces):
            offset = _walk(sub, _join(prefix, str(index)), out, offset, top_key or str(index))
        return offset
    top = top_key or prefix or "obs"
    if isinstance(space, gym.spaces.Discrete):
        out.append(Component(prefix or "obs", offset, offset + int(space.n), "one_hot", top))
        return offset + int(space.n)
    if isinstance(space, gym.spaces.MultiDiscrete):
        for index, n in enumerate(np.asarray(space.nvec).reshape(-1)):
            out.append(Component(_join(prefix, str(index)), offset, offset + int(n), "one_hot", top))
            offset += int(n)
        return offset
    size = int(np.prod(space.shape))
    if len(space.shape) > 1:
        out.append(Component(prefix or "obs", offset, offset + size, "block", top, tuple(space.shape)))
        return offset + size
    if size == 1 and prefix:
        out.append(Component(prefix, offset, offset + 1, "element", top))
        return offset + 1
    for index in range(size):
        out.append(Component(_join(prefix, str(index)), offset + index, offset + index + 1, "element", top))
    return offset + size


def component_values(
    values: np.ndarray, obs: np.ndarray, parts: list[Component], absolute: bool
) -> np.ndarray:
    """``(N, K)`` attribution per component (|.| first when ``absolute``; needed for blocks)."""
    columns = []
    for part in parts:
        block = values[:, part.start : part.stop]
        if part.kind == "one_hot":
            active = np.argmax(obs[:, part.start : part.stop], axis=1)
            column = block[np.arange(len(block)), active]
            columns.append(np.abs(column) if absolute else column)
        elif part.kind == "block":
            columns.append(np.abs(block).mean(axis=1) if absolute else block.mean(axis=1))
        else:
            columns.append(np.abs(block[:, 0]) if absolute else block[:, 0])
    return np.stack(columns, axis=1)


def unflatten(values: np.ndarray, obs: np.ndarray, space: gym.Space) -> Any:
    """Attributions in the original structure: nested dicts/tuples of ``(N, ...)`` arrays.

    Box parts get their original shape; a Discrete part gets ``(N,)`` (the active
    slot's attribution); a MultiDiscrete part ``(N, len(nvec))``.
    """
    return _unflatten(values, obs, space, [0])


def _unflatten(values: np.ndarray, obs: np.ndarray, space: gym.Space, cursor: list[int]) -> Any:
    if isinstance(space, gym.spaces.Dict):
        return {key: _unflatten(values, obs, sub, cursor) for key, sub in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(_unflatten(values, obs, sub, cursor) for sub in space.spaces)
    n = len(values)
    if isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete)):
        sizes = (
            [int(space.n)]
            if isinstance(space, gym.spaces.Discrete)
            else list(np.asarray(space.nvec).reshape(-1))
        )
        parts = []
        for size in sizes:
            start, stop = cursor[0], cursor[0] + int(size)
            active = np.argmax(obs[:, start:stop], axis=1)
            parts.append(values[np.arange(n), start + active])
            cursor[0] = stop
        return parts[0] if isinstance(space, gym.spaces.Discrete) else np.stack(parts, axis=1)
    size = int(np.prod(space.shape))
    start = cursor[0]
    cursor[0] += size
    return values[:, start : start + size].reshape(n, *space.shape)
