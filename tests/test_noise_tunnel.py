"""SmoothGrad as a noise tunnel over the gradient: statistics of the noise it adds."""

from __future__ import annotations

import numpy as np
from analytic import context_for, polynomial

from rllib_saliency.methods import get_method


def test_linear_function_is_unchanged_by_noise():
    a = np.array([1.0, -2.0, 0.5])
    x = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    method = get_method("smoothgrad")
    result = method.attribute(polynomial(a, np.zeros(3)), x, context_for(x), **method.check_options({}, (3,)))
    np.testing.assert_allclose(result.values, np.broadcast_to(a, x.shape), rtol=1e-6)


def test_noise_scale_is_relative_to_each_features_range():
    # f = ½ Σ x² → gradient x + ε, so SmoothGrad − x is the mean of n noise draws: sd σ/√n.
    rng = np.random.default_rng(2)
    x = (rng.uniform(-1, 1, size=(2000, 2)) * np.array([1.0, 100.0])).astype(np.float32)
    method = get_method("smoothgrad")
    options = method.check_options({"n_samples": 4, "noise_level": 0.1}, (2,))
    result = method.attribute(polynomial(np.zeros(2), np.full(2, 0.5)), x, context_for(x), **options)
    feature_range = x.max(0) - x.min(0)
    measured = (result.values - x).std(axis=0)
    np.testing.assert_allclose(measured, 0.1 * feature_range / np.sqrt(4), rtol=0.1)


def test_seed_reproduces_and_changes_draws():
    x = np.random.default_rng(3).normal(size=(5, 2)).astype(np.float32)
    method = get_method("smoothgrad")
    fn = polynomial(np.zeros(2), np.ones(2))
    run = lambda seed: method.attribute(fn, x, context_for(x, seed), **method.check_options({}, (2,))).values  # noqa: E731
    np.testing.assert_array_equal(run(0), run(0))
    assert not np.allclose(run(0), run(1))
