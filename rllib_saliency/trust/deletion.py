"""Deletion test (Petsiuk et al. 2018, RISE): remove the most important features first.

Features are set to the baseline in order of decreasing attribution, in
``steps`` chunks, and the target is re-evaluated after each chunk. The curve is
normalised per sample, ``(f_k − f_all_removed) / |f_x − f_all_removed|``, so it
runs from 1 to 0 (from −1 to 0 for a sample whose target rises when everything
is removed), and its area (trapezoid over the fraction removed) is the deletion
AUC: **lower is better** — the target falls fast when the features the map
calls important go. The normalisation does not depend on the order, so the
order with the lowest AUC is the one with the lowest target along the way
(for a linear target, the order of decreasing gradient × input). The same with
a random order is the reference: a faithful map has a clearly lower AUC than random. Image observations remove
pixels (all channels at once), ranked by attribution summed over channels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rllib_saliency.backends import Backend, TargetFunction, backend_for
from rllib_saliency.engine import Attribution

DEFAULT_STEPS = 32


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


def _normalised_auc(curve: np.ndarray) -> np.ndarray:
    start, end = curve[0].astype(np.float64), curve[-1].astype(np.float64)
    span = np.abs(start - end)
    valid = span > 1e-6
    normalised = np.divide(curve - end, span, out=np.zeros_like(curve, dtype=np.float64), where=valid)
    auc = np.trapezoid(normalised, dx=1.0 / (len(curve) - 1), axis=0)
    return np.where(valid, auc, np.nan)


def deletion_auc(
    policy: Any,
    attribution: Attribution,
    *,
    baseline: str | np.ndarray = "zeros",
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    backend: Backend | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample deletion AUC by the map's order and by a random order, each ``(N,)``.

    ``baseline``: what a removed feature becomes: ``"zeros"``, ``"mean"`` (the
    batch mean) or an observation-shaped array. NaN for samples whose target
    does not change when everything is removed, and for non-finite rows.
    """
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
    by_map = np.argsort(-unit_scores, axis=1, kind="stable")
    rng = np.random.default_rng(seed)
    by_chance = np.argsort(rng.random(unit_scores.shape), axis=1)
    results = []
    for order in (by_map, by_chance):
        auc = np.full(len(attribution.values), np.nan)
        auc[attribution.finite] = _normalised_auc(deletion_curve(fn, inputs, order, base, steps, unit_of))
        results.append(auc)
    return results[0], results[1]
