"""Completeness of Integrated Gradients: attributions should add up to f(x) − f(baseline).

Per sample, ``S = Σ attributions``, ``Δ = f(x) − f(baseline)`` and the error
Integrated Gradients reports, ``δ = S − Δ``. The batch's completeness error is

    2 Σ|δ_i| / Σ(|S_i| + |Δ_i|)

the error relative to the mean size of the two sides (the symmetric relative
difference), summed over the batch before dividing so a sample whose target
barely moves weighs little instead of dividing by almost nothing. It lies in
**[0, 2]**: 0 when the attributions add up exactly; for small errors it is
``Σ|δ| / Σ|Δ|`` to first order (so ~0.01 still means 1 %); 2 when the
attributions add up to the opposite of the change, or one side is 0 and the
other is not. Rows whose ``δ``, ``S`` or ``Δ`` is not finite are left out; NaN
when no row is left with a nonzero side (every attribution 0 and no target
moves), and then the callback logs nothing.
"""

from __future__ import annotations

import numpy as np

from rllib_saliency.engine import Attribution


def completeness_error(attribution: Attribution) -> float:
    """``2 Σ|δ| / Σ(|Σ attributions| + |f(x) − f(baseline)|)`` over the finite samples, in [0, 2].

    ``δ`` is the per-sample completeness error Integrated Gradients reports.
    Near 0 (below ~0.01): the quadrature is accurate. Large values mean too few
    ``steps`` for this model, and the map should not be trusted in detail.
    NaN when every sample's attributions and change are 0.
    """
    if attribution.delta is None:
        raise ValueError(f"completeness_error needs Integrated Gradients; got method {attribution.method!r}.")
    numerator, denominator = completeness_sums(attribution)
    return numerator / denominator if denominator > 0 else float("nan")


def completeness_sums(attribution: Attribution) -> tuple[float, float]:
    """(2 Σ|δ|, Σ(|S| + |Δ|)): what env runners send, so the ratio merges exactly."""
    if attribution.delta is None:
        raise ValueError(f"completeness_error needs Integrated Gradients; got method {attribution.method!r}.")
    n = len(attribution.values)
    delta = attribution.delta.astype(np.float64)
    total = attribution.values.reshape(n, -1).sum(axis=1, dtype=np.float64)  # S
    change = total - delta  # Δ = f(x) - f(baseline)
    rows = np.isfinite(delta) & np.isfinite(total) & np.isfinite(change)
    error = np.abs(delta[rows])
    # |δ| ≤ |S| + |Δ| exactly; max() keeps it so after rounding, and with it the ratio ≤ 2.
    sides = np.maximum(np.abs(total[rows]) + np.abs(change[rows]), error)
    return float(2.0 * error.sum()), float(sides.sum())
