"""Agreement between two methods' maps of the same observations and target."""

from __future__ import annotations

import numpy as np

from rllib_saliency.engine import Attribution
from rllib_saliency.trust.ranks import per_sample_rank_corr


def rank_agreement(first: Attribution, second: Attribution) -> np.ndarray:
    """Per-sample Spearman correlation of |attribution| between two methods, ``(N,)`` in [−1, 1].

    NaN for a sample where either map is constant (see :mod:`rllib_saliency.trust.ranks`)
    or not finite; the callback logs the mean of the others. Near 1: the methods rank
    features alike. Low values mean at least one of them is not telling what the model
    uses — check the other trust metrics."""
    if first.values.shape != second.values.shape or first.target != second.target:
        raise ValueError("rank_agreement needs two attributions of the same observations and target.")
    return per_sample_rank_corr(first.values, second.values)
