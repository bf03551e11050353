"""Completeness of Integrated Gradients: attributions should add up to f(x) − f(baseline)."""

from __future__ import annotations

import numpy as np

from rllib_saliency.engine import Attribution


def completeness_error(attribution: Attribution) -> float:
    """mean |delta| / mean |f(x) − f(baseline)| over the finite samples.

    ``delta`` is the per-sample completeness error Integrated Gradients reports.
    Near 0 (below ~0.01): the quadrature is accurate. Large values mean too few
    ``steps`` for this model, and the map should not be trusted in detail.
    """
    if attribution.delta is None:
        raise ValueError(f"completeness_error needs Integrated Gradients; got method {attribution.method!r}.")
    numerator, denominator = completeness_sums(attribution)
    return numerator / denominator if denominator > 0 else float("nan")


def completeness_sums(attribution: Attribution) -> tuple[float, float]:
    """(Σ|delta|, Σ|f(x) − f(baseline)|): what env runners send, so the ratio merges exactly."""
    rows = np.isfinite(attribution.delta)
    values = attribution.values[rows].reshape(int(rows.sum()), -1)
    delta = attribution.delta[rows].astype(np.float64)
    change = values.sum(axis=1, dtype=np.float64) - delta  # f(x) - f(baseline)
    return float(np.abs(delta).sum()), float(np.abs(change).sum())
