"""Deletion test (Petsiuk et al. 2018, RISE): remove the most important features first.

Features are set to the baseline in ``steps`` chunks, most important first,
and the target ``f`` is re-evaluated after each chunk: ``f_0 = f(x)`` intact,
``f_K = f(baseline)`` with everything removed, ``Δ = f_0 − f_K`` the sample's
*span*.

**Per sample**, the curve is the share of the change still to go,
``r_k = (f_k − f_K) / Δ``: 1 intact, 0 with everything removed, whichever way
the target moves. It is clipped to [0, 1] before its area (trapezoid over the
fraction removed) is taken, so the per-sample AUC lies in **[0, 1]**. Why
clip: a curve that first moves *away* from ``f_K`` (``r > 1``) has done none of
the change yet, one that passes beyond ``f_K`` (``r < 0``) has done all of it;
without the clip a sample whose span is tiny next to the excursions in between
divides by almost nothing, and one sample can push the mean anywhere
(the unclipped mean reached −11.8 on CartPole).

**"Most important"** is decided by the map, in the direction of the change:
units (features; pixels, all channels at once, for images, scored by the sum
over channels) go in decreasing order of ``sign(Δ) × attribution``. For the
usual case, a target that falls when everything is removed, that is the map's
own decreasing order; for a target that rises, the features the map says
pushed it *down* go first — the ones that account for ``f_0 − f_K``. On a
linear target with ``baseline = 0`` the gradient × input map's order then
gives the lowest AUC of all orders, for every sample.

**Samples whose target does not move** (``|Δ| ≤ 1e-5 × max(|f_0|, |f_K|)``,
float32 rounding through a network, including ``Δ = 0``) have no curve to
speak of: their per-sample AUC is NaN, as for non-finite rows, and they carry
no weight below.

**For the batch** (what the training callback logs), samples are weighted by
their span: ``Σ |Δ_i| AUC_i / Σ |Δ_i|`` over the moving samples — the area
under the batch's summed (clipped) curve, normalised by the batch's total
change. It lies in **[0, 1]** (NaN when no sample moves, and then nothing is
logged). A sample whose target barely moves barely counts.

**Lower is better**: the target gets to its removed value fast when the
features the map calls important go. The same with a random order (one per
sample, drawn from ``seed``) is the reference, about 0.5 when each feature
accounts for a similar share of the change: a faithful map scores clearly below
it, a map ranking features backwards above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rllib_saliency.backends import Backend, TargetFunction, backend_for
from rllib_saliency.engine import Attribution

DEFAULT_STEPS = 32
# Relative change of the target below which a sample "does not move": float32
# has ~7 significant digits, and a network's output is good to about 5-6.
STILL_RTOL = 1e-5


def _units(inputs: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(per-unit scores (N, U), unit index of each input element): pixels for images."""
    n = len(inputs)
    if inputs.ndim == 4:
        height, width, channels = inputs.shape[1:]
        unit_of = np.repeat(np.arange(height * width), channels)
        return scores.reshape(n, height * width, channels).sum(axis=2), unit_of
    size = int(np.prod(inputs.shape[1:]))
    return scores.reshape(n, size), np.arange(size)


def deletion_curve(
    fn: TargetFunction,
    inputs: np.ndarray,
    order: np.ndarray,
    baseline: np.ndarray,
    steps: int,
    unit_of: np.ndarray,
) -> np.ndarray:
    """Target values ``(steps + 1, N)`` as the units in ``order`` (N, U) go, chunk by chunk."""
    n = len(inputs)
    units = order.shape[1]
    flat = inputs.reshape(n, -1).copy()
    flat_baseline = np.broadcast_to(baseline.reshape(-1), flat.shape)
    bounds = np.round(np.linspace(0, units, steps + 1)).astype(int)
    curve = [fn.value(inputs)]
    rows = np.arange(n)[:, None]
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        removed_units = np.zeros((n, units), bool)
        removed_units[rows, order[:, start:stop]] = True
        removed = removed_units[:, unit_of]
        flat[removed] = flat_baseline[removed]
        curve.append(fn.value(flat.reshape(inputs.shape).astype(np.float32)))
    return np.stack(curve)


def curve_span(curve: np.ndarray) -> np.ndarray:
    """``|f_0 − f_K|`` per sample, ``(N,)``; 0 where the target does not move (or is not finite)."""
    start, end = curve[0].astype(np.float64), curve[-1].astype(np.float64)
    span = np.abs(start - end)
    moves = np.isfinite(span) & (span > STILL_RTOL * np.maximum(np.abs(start), np.abs(end)))
    return np.where(moves, span, 0.0)


def normalised_auc(curve: np.ndarray) -> np.ndarray:
    """Per-sample area under the clipped share-still-to-go curve, ``(N,)`` in [0, 1]; NaN where
    the target does not move."""
    curve = curve.astype(np.float64)
    start, end = curve[0], curve[-1]
    moves = curve_span(curve) > 0
    change = np.where(moves, start - end, 1.0)  # signed Δ; 1.0 only keeps still rows finite
    share = np.clip((curve - end) / change, 0.0, 1.0)
    # NaN inside a curve (a non-finite model output) must not slip out of the range either.
    share = np.where(np.isfinite(share), share, np.nan)
    auc = np.trapezoid(share, dx=1.0 / (len(curve) - 1), axis=0)
    return np.where(moves & np.isfinite(auc), auc, np.nan)


@dataclass(frozen=True)
class DeletionResult:
    """Per-sample deletion AUCs ``(N,)`` (NaN for still or non-finite rows) and each sample's span.

    ``by_map``/``by_chance``: by the map's order and by a random order, each in [0, 1].
    ``span``: ``|f(x) − f(baseline)|``, 0 for still or non-finite rows: the batch weights.
    """

    by_map: np.ndarray
    by_chance: np.ndarray
    span: np.ndarray

    def sums(self, which: str = "by_map") -> tuple[float, float]:
        """``(Σ span·AUC, Σ span)`` over the moving samples: a span-weighted mean that merges
        exactly across workers (the callback's scalar is their ratio)."""
        auc = getattr(self, which)
        used = np.isfinite(auc) & (self.span > 0)
        return float((self.span[used] * auc[used]).sum()), float(self.span[used].sum())

    def score(self, which: str = "by_map") -> float:
        """The batch's span-weighted deletion AUC in [0, 1]; NaN when no sample's target moves."""
        numerator, denominator = self.sums(which)
        # min(): float rounding of the two sums must not step past 1.
        return min(numerator / denominator, 1.0) if denominator > 0 else float("nan")


def deletion_test(
    policy: Any,
    attribution: Attribution,
    *,
    baseline: str | np.ndarray = "zeros",
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    backend: Backend | None = None,
) -> DeletionResult:
    """The deletion test of ``attribution``: per-sample AUCs by the map's and a random order,
    and the spans that weight them (see the module docstring for the definitions)."""
    if attribution.resolved is None or attribution.finite is None:
        raise ValueError("deletion_auc needs an Attribution returned by explain().")
    inputs = attribution.observations[attribution.finite]
    scores = attribution.values[attribution.finite]
    if isinstance(baseline, str):
        if baseline not in ("zeros", "mean"):
            raise ValueError(f"baseline must be 'zeros', 'mean' or an array; got {baseline!r}.")
        base = np.zeros(inputs.shape[1:], np.float32) if baseline == "zeros" else inputs.mean(axis=0)
    else:
        base = np.asarray(baseline, np.float32)
    unit_scores, unit_of = _units(inputs, scores)
    steps = int(min(steps, unit_scores.shape[1]))
    backend = backend or backend_for(policy)
    backend.sync_weights()
    fn = TargetFunction(backend, attribution.resolved, origin=inputs)
    # The direction of each sample's change decides which end of the map goes first.
    removed_all = np.broadcast_to(base, inputs.shape).astype(np.float32)
    direction = np.sign(fn.value(inputs).astype(np.float64) - fn.value(removed_all).astype(np.float64))
    directed = np.nan_to_num(direction[:, None] * unit_scores, nan=0.0)
    by_map = np.argsort(-directed, axis=1, kind="stable")
    rng = np.random.default_rng(seed)
    by_chance = np.argsort(rng.random(unit_scores.shape), axis=1)
    results, span = [], np.zeros(len(attribution.values))
    for order in (by_map, by_chance):
        curve = deletion_curve(fn, inputs, order, base, steps, unit_of)
        auc = np.full(len(attribution.values), np.nan)
        auc[attribution.finite] = normalised_auc(curve)
        results.append(auc)
        span[attribution.finite] = curve_span(curve)  # the same both times: same ends
    return DeletionResult(results[0], results[1], span)


def deletion_auc(
    policy: Any,
    attribution: Attribution,
    *,
    baseline: str | np.ndarray = "zeros",
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    backend: Backend | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample deletion AUC by the map's order and by a random order, each ``(N,)`` in [0, 1].

    ``baseline``: what a removed feature becomes: ``"zeros"``, ``"mean"`` (the
    batch mean) or an observation-shaped array. NaN for samples whose target
    does not change when everything is removed, and for non-finite rows. For
    one number per batch (the callback's), weight by span:
    ``deletion_test(...).score()``; a plain ``np.nanmean`` also stays in [0, 1].
    """
    result = deletion_test(policy, attribution, baseline=baseline, steps=steps, seed=seed, backend=backend)
    return result.by_map, result.by_chance
