"""The interface every attribution method implements, and what they share.

A method sees only a :class:`~rllib_saliency.backends.base.TargetFunction`
(target values and input gradients), the inputs, and batch-level statistics.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from rllib_saliency.backends.base import TargetFunction


@dataclass(frozen=True)
class BatchContext:
    """Statistics of the whole batch passed to ``explain()`` (finite rows only).

    Methods are run chunk by chunk; anything that must not depend on the
    chunking (noise scale, "mean" baseline) comes from here. The statistics are
    computed on first use: most methods need none, and a small batch's explain()
    call should not pay for them.
    """

    rows: np.ndarray
    seed: int = 0
    # Where this chunk starts in ``rows``, and how many rows each random generator covers:
    # the rows [k * block, (k + 1) * block) draw from a generator seeded (seed, k * block), so the
    # numbers drawn do not depend on how many rows one pass takes (None: one block, this chunk).
    start: int = 0
    block: int | None = None

    @functools.cached_property
    def _generators(self) -> dict[int, np.random.Generator]:
        return {}

    def _blocks(self, n: int) -> list[tuple[int, int]]:
        """The row ranges ``[first, last)`` of this chunk's ``n`` rows that draw from one generator each."""
        stop = self.start + n
        if self.block is None:
            return [(self.start, stop)]
        block = self.block or n or 1
        return [(first, min(stop, (first // block + 1) * block)) for first in range(self.start, stop, block)]

    def standard_normal(self, shape: tuple[int, ...]) -> np.ndarray:
        """Standard normal draws of ``shape`` (this chunk's rows first), float64; successive calls
        continue each generator's stream. A generator is built on first use (it costs ~60 µs)."""
        parts = []
        for first, last in self._blocks(shape[0]):
            generator = self._generators.get(first)
            if generator is None:
                generator = self._generators[first] = np.random.default_rng((self.seed, first))
            parts.append(generator.standard_normal((last - first, *shape[1:])))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def generator_seeds(self, n: int) -> list[tuple[int, int]]:
        """For a backend that draws its own noise (SmoothGrad's ``noise_source="device"``): each
        block of this chunk's ``n`` rows, as (rows, a 63-bit seed from ``(seed, first row)``), the
        blocks ``standard_normal`` draws from, so the noise does not depend on the pass size."""
        seeded = []
        for first, last in self._blocks(n):
            state = np.random.SeedSequence((self.seed, first)).generate_state(1, np.uint64)[0]
            seeded.append((last - first, int(state >> 1)))
        return seeded

    def _statistic(self, reduce: Any) -> np.ndarray:
        if len(self.rows) == 0:
            return np.zeros(self.rows.shape[1:], np.float32)
        return reduce(self.rows, axis=0)

    @functools.cached_property
    def feature_min(self) -> np.ndarray:
        return self._statistic(np.min)

    @functools.cached_property
    def feature_max(self) -> np.ndarray:
        return self._statistic(np.max)

    @functools.cached_property
    def feature_mean(self) -> np.ndarray:
        return self._statistic(np.mean)


@dataclass(frozen=True)
class MethodResult:
    values: np.ndarray
    delta: np.ndarray | None = None


class AttributionMethod(Protocol):
    name: str
    defaults: Mapping[str, Any]

    def check_options(self, options: Mapping[str, Any], obs_shape: tuple[int, ...]) -> dict[str, Any]:
        """Validated options with defaults filled in; ValueError names the bad one."""

    def attribute(
        self, fn: TargetFunction, inputs: np.ndarray, context: BatchContext, **options: Any
    ) -> MethodResult:
        """Attributions with the shape of ``inputs``."""

    def passes(self, options: Mapping[str, Any], obs_shape: tuple[int, ...]) -> int:
        """Model passes per row with these (checked) options, counting a forward-only pass as a
        whole one: an upper bound of the cost relative to one gradient, for the training
        callback's time budget (``callbacks/schedule.py``)."""


def fill_defaults(method: AttributionMethod, options: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults plus ``options``; ValueError for an option the method does not take."""
    unknown = sorted(set(options) - set(method.defaults))
    if unknown:
        valid = ", ".join(sorted(method.defaults)) or "none"
        raise ValueError(
            f"method {method.name!r} got unknown option(s) {', '.join(unknown)}; valid options: {valid}."
        )
    return {**method.defaults, **options}


def check_positive_int(name: str, method: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"method {method!r}: option {name!r} must be a positive integer, got {value!r}.")
    return int(value)


BASELINE_NAMES = ("zeros", "mean")


def check_baseline(method: str, baseline: Any, obs_shape: tuple[int, ...]) -> Any:
    """A baseline is 'zeros', 'mean' (batch mean) or an array of the observation's shape."""
    if isinstance(baseline, str):
        if baseline not in BASELINE_NAMES:
            raise ValueError(
                f"method {method!r}: option 'baseline' must be 'zeros', 'mean' or an array "
                f"of shape {obs_shape}; got {baseline!r}."
            )
        return baseline
    array = np.asarray(baseline, dtype=np.float32)
    if array.shape != tuple(obs_shape) or not np.all(np.isfinite(array)):
        raise ValueError(
            f"method {method!r}: option 'baseline' as an array must be finite with the "
            f"observation's shape {obs_shape}; got shape {array.shape}."
        )
    return array


def baseline_array(baseline: Any, context: BatchContext) -> np.ndarray:
    """The baseline as one observation-shaped float32 array."""
    if isinstance(baseline, str):
        if baseline == "zeros":
            return np.zeros_like(context.feature_mean)
        return context.feature_mean
    return baseline
