"""Can I trust this map? Sanity checks and faithfulness metrics for attributions.

One metric per module, each a plain function on an :class:`~rllib_saliency.Attribution`
(the training callback logs the same numbers):

- :func:`completeness_error` (Integrated Gradients),
- :func:`randomization_rank_corr` (model randomisation, Adebayo et al. 2018),
- :func:`deletion_auc` (deletion test, Petsiuk et al. 2018),
- :func:`rank_agreement` (agreement between two methods).
"""

from rllib_saliency.trust.agreement import rank_agreement
from rllib_saliency.trust.completeness import completeness_error
from rllib_saliency.trust.deletion import deletion_auc, deletion_curve
from rllib_saliency.trust.randomization import randomization_rank_corr, randomized_backend
from rllib_saliency.trust.ranks import per_sample_rank_corr

__all__ = [
    "completeness_error",
    "deletion_auc",
    "deletion_curve",
    "per_sample_rank_corr",
    "randomization_rank_corr",
    "randomized_backend",
    "rank_agreement",
]
