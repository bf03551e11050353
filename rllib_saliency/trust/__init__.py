"""Can I trust this map? Sanity checks and faithfulness metrics for attributions.

One metric per module, each a plain function on an :class:`~rllib_saliency.Attribution`
(the training callback logs the same numbers):

- :func:`completeness_error` (Integrated Gradients), in [0, 2],
- :func:`randomization_rank_corr` (model randomisation, Adebayo et al. 2018), per sample in [−1, 1],
- :func:`deletion_auc` / :func:`deletion_test` (deletion test, Petsiuk et al. 2018), in [0, 1],
- :func:`rank_agreement` (agreement between two methods), per sample in [−1, 1].

Each module's docstring gives the exact definition, and which inputs give NaN
(never a number outside the range).
"""

from rllib_saliency.trust.agreement import rank_agreement
from rllib_saliency.trust.completeness import completeness_error
from rllib_saliency.trust.deletion import DeletionResult, deletion_auc, deletion_curve, deletion_test
from rllib_saliency.trust.randomization import randomization_rank_corr, randomized_backend
from rllib_saliency.trust.ranks import per_sample_rank_corr

__all__ = [
    "DeletionResult",
    "completeness_error",
    "deletion_auc",
    "deletion_curve",
    "deletion_test",
    "per_sample_rank_corr",
    "randomization_rank_corr",
    "randomized_backend",
    "rank_agreement",
]
