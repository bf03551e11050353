"""Integrated Gradients against closed forms (Gauss–Legendre is exact on polynomials)."""

from __future__ import annotations

import numpy as np
from analytic import context_for, polynomial

from rllib_saliency.methods import get_method


def test_quadratic_attributions_are_exact():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=5), rng.normal(size=5)
    x = rng.normal(size=(7, 5)).astype(np.float32)
    method = get_method("integrated_gradients")
    options = method.check_options({"steps": 2}, (5,))
    result = method.attribute(polynomial(a, b), x, context_for(x), **options)
    # ∫₀¹ (a + 2bαx) dα · x = a·x + b·x²
    np.testing.assert_allclose(result.values, a * x + b * x * x, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.delta, 0.0, atol=1e-5)


def test_mean_baseline_completeness():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=3), rng.normal(size=3)
    x = rng.normal(size=(9, 3)).astype(np.float32)
    method = get_method("integrated_gradients")
    result = method.attribute(
        polynomial(a, b), x, context_for(x), **method.check_options({"baseline": "mean"}, (3,))
    )
    f = lambda v: (a * v + b * v * v).sum(axis=-1)  # noqa: E731
    np.testing.assert_allclose(result.values.sum(1), f(x) - f(x.mean(0)), rtol=1e-4, atol=1e-5)
