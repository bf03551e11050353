"""Model randomisation test (Adebayo et al. 2018, "Sanity checks for saliency maps").

The same attribution is recomputed on a copy of the policy's model whose
weights are all re-initialised at once (kernels Glorot-uniform, biases zero —
not the cascading variant), and compared with the trained model's map by
per-sample Spearman rank correlation of |attribution|. A correlation near 1
means the map does not depend on what the model learned. The policy's own
weights and graph are never touched: graph mode uses a second private replica,
eager mode a second model built by ``ModelCatalog``, torch a deep copy of the
module (initialised from numpy's generator, so torch's global RNG, and with it
training, is not disturbed).
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from rllib_saliency.backends import Backend, check_supported, policy_id_of
from rllib_saliency.backends.base import reinitialised_weights
from rllib_saliency.engine import Attribution, explain
from rllib_saliency.recurrent import initial_states
from rllib_saliency.trust.ranks import per_sample_rank_corr

_randomized: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def randomized_backend(policy: Any, seed: int = 0) -> Backend:
    """A backend running a re-initialised copy of the policy's model (cached per policy and seed)."""
    cache = _randomized.setdefault(policy, {})
    if seed in cache:
        return cache[seed]
    rng = np.random.default_rng(seed)
    mode = check_supported(policy)
    if mode == "torch":
        from rllib_saliency.backends.torch import randomized_copy_backend

        backend = randomized_copy_backend(policy, policy_id_of(policy), rng)
    elif mode == "graph":
        from rllib_saliency.backends.tf_graph import TFGraphBackend

        backend = TFGraphBackend(policy, policy_id_of(policy))
        backend.load_fixed_weights(reinitialised_weights(backend.variable_shapes, rng))
    else:
        import tensorflow as tf

        from rllib_saliency.backends._tf_targets import rebuild_model
        from rllib_saliency.backends.tf_eager import TFEagerBackend

        model = rebuild_model(policy, "tf2", "saliency_randomized")
        backend = TFEagerBackend(policy, policy_id_of(policy), model=model)
        backend.forward(  # builds the model's variables
            np.zeros((1, *policy.observation_space.shape), np.float32),
            initial_states(policy, 1),
        )
        variables = model.variables()
        for variable, value in zip(
            variables, reinitialised_weights([tuple(v.shape.as_list()) for v in variables], rng), strict=True
        ):
            variable.assign(tf.convert_to_tensor(value))
    cache[seed] = backend
    return backend


def randomization_rank_corr(policy: Any, attribution: Attribution, *, seed: int = 0) -> np.ndarray:
    """Per-sample rank correlation between the map and the same map on a randomised model, ``(N,)``.

    In [−1, 1]; NaN where either map is constant over the sample's features or a row is
    not finite (see :mod:`rllib_saliency.trust.ranks`)."""
    if attribution.finite is None or attribution.resolved is None:
        raise ValueError("randomization_rank_corr needs an Attribution returned by explain().")
    # Same observations, same per-sample choices (e.g. the trained model's greedy
    # action), same options: only the weights differ.
    randomized = explain(
        policy,
        attribution.observations,
        attribution.method,
        attribution.target,
        backend=randomized_backend(policy, seed),
        resolved_target=attribution.resolved,
        **attribution.options,
    )
    return per_sample_rank_corr(attribution.values, randomized.values)
