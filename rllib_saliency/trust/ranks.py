"""Per-sample Spearman rank correlation between two attribution maps."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def per_sample_rank_corr(a: np.ndarray, b: np.ndarray, absolute: bool = True) -> np.ndarray:
    """Spearman correlation of each sample's features, ``(N,)``; NaN where a map is constant.

    With ``absolute`` (the default, as Adebayo et al. do) the ranks are of
    |attribution|: "which features matter most", whatever the sign.
    """
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    if absolute:
        a, b = np.abs(a), np.abs(b)
    ranks_a = rankdata(a, axis=1)  # ties get their average rank
    ranks_b = rankdata(b, axis=1)
    ranks_a -= ranks_a.mean(axis=1, keepdims=True)
    ranks_b -= ranks_b.mean(axis=1, keepdims=True)
    denominator = np.sqrt((ranks_a**2).sum(axis=1) * (ranks_b**2).sum(axis=1))
    numerator = (ranks_a * ranks_b).sum(axis=1)
    return np.divide(numerator, denominator, out=np.full(len(a), np.nan), where=denominator > 0)
