"""Per-sample Spearman rank correlation between two attribution maps.

Each value lies in **[−1, 1]** (clipped, so float rounding cannot step past the
ends) or is NaN, and NaN exactly when a correlation has no meaning: a map that
is constant over the sample's features (every |attribution| tied: all zeros,
a single feature), or a row with a NaN in either map. Ties get their average
rank; ranks do not depend on scale, so tiny attributions count as much as large
ones. ±inf are ranked like any other value (largest |attribution|).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def per_sample_rank_corr(a: np.ndarray, b: np.ndarray, absolute: bool = True) -> np.ndarray:
    """Spearman correlation of each sample's features, ``(N,)`` in [−1, 1]; NaN where a map is
    constant or a row has NaN.

    With ``absolute`` (the default, as Adebayo et al. do) the ranks are of
    |attribution|: "which features matter most", whatever the sign.
    """
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    if a.shape != b.shape:
        raise ValueError(f"per_sample_rank_corr needs maps of the same shape; got {a.shape} and {b.shape}.")
    if absolute:
        a, b = np.abs(a), np.abs(b)
    nan_rows = np.isnan(a).any(axis=1) | np.isnan(b).any(axis=1)
    # Ranks of NaN-free copies (NaN rows are answered NaN below): ties get their average rank.
    ranks_a = rankdata(np.where(nan_rows[:, None], 0.0, a), axis=1)
    ranks_b = rankdata(np.where(nan_rows[:, None], 0.0, b), axis=1)
    ranks_a -= ranks_a.mean(axis=1, keepdims=True)
    ranks_b -= ranks_b.mean(axis=1, keepdims=True)
    denominator = np.sqrt((ranks_a**2).sum(axis=1) * (ranks_b**2).sum(axis=1))
    numerator = (ranks_a * ranks_b).sum(axis=1)
    corr = np.divide(numerator, denominator, out=np.full(len(a), np.nan), where=(denominator > 0) & ~nan_rows)
    return np.clip(corr, -1.0, 1.0)
