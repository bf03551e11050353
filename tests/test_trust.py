"""Trust metrics: closed forms on linear functions, sanity checks on trained policies."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from analytic import PolynomialBackend, polynomial
from conftest import FRAMEWORK, rollout_observations

from rllib_saliency import explain
from rllib_saliency.methods import METHODS
from rllib_saliency.methods.base import MethodResult
from rllib_saliency.trust import (
    completeness_error,
    deletion_auc,
    deletion_curve,
    deletion_test,
    per_sample_rank_corr,
    randomization_rank_corr,
    rank_agreement,
)
from rllib_saliency.trust.deletion import normalised_auc


def test_deletion_by_gradient_x_input_is_optimal_on_a_linear_function():
    from test_trust_bounds import analytic_attribution

    rng = np.random.default_rng(0)
    weights = rng.normal(size=5)
    x = rng.normal(size=(6, 5)).astype(np.float32)
    change = x @ weights
    assert (change > 0).any() and (change < 0).any()  # targets that fall and targets that rise
    fn = polynomial(weights, np.zeros(5))
    contribution = weights * x  # gradient × input, the exact per-feature contribution
    unit_of = np.arange(5)
    backend = PolynomialBackend(weights, np.zeros(5))
    ours = deletion_test(None, analytic_attribution(contribution, x), steps=5, backend=backend).by_map
    assert np.all((ours >= 0) & (ours <= 1))
    # Brute force over every order: none has a lower AUC for any sample.
    for order in itertools.permutations(range(5)):
        orders = np.tile(order, (6, 1))
        other = normalised_auc(deletion_curve(fn, x, orders, np.zeros(5), 5, unit_of))
        assert np.all(ours <= other + 1e-6)


def test_completeness_error_is_zero_for_a_linear_function():
    from rllib_saliency.engine import Attribution

    a = np.array([1.0, -2.0, 0.5])
    x = np.random.default_rng(1).normal(size=(8, 3)).astype(np.float32)
    backend = PolynomialBackend(a, np.zeros(3))
    change = (x * a).sum(axis=1)  # f(x) - f(0)
    method = METHODS["integrated_gradients"]
    from analytic import context_for

    result = method.attribute(polynomial(a, np.zeros(3)), x, context_for(x), **method.check_options({}, (3,)))
    attribution = Attribution(result.values, change, "integrated_gradients", "value", x, result.delta)
    assert completeness_error(attribution) < 1e-6
    assert backend.calls == 0


def test_rank_correlation_basics():
    a = np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
    np.testing.assert_allclose(per_sample_rank_corr(a, a * 10), [1.0, 1.0])
    np.testing.assert_allclose(per_sample_rank_corr(a, -a, absolute=False), [-1.0, -1.0])
    assert np.isnan(per_sample_rank_corr(np.ones((1, 3)), a[:1])[0])


class InputItself:
    """A 'method' whose map does not depend on the model at all: |obs|."""

    name = "input_itself"
    defaults: dict = {}

    def check_options(self, options, obs_shape):
        return {}

    def attribute(self, fn, inputs, context, **options):
        return MethodResult(np.abs(inputs))


def test_randomization_on_a_trained_policy(trained):
    policy = trained("CartPole-v1").get_policy()
    obs = rollout_observations(trained("CartPole-v1"), n=64)
    ops_before = len(policy.get_session().graph.get_operations()) if FRAMEWORK == "tf" else 0
    gradient = explain(policy, obs, "gradient", "action")
    corr = randomization_rank_corr(policy, gradient)
    assert np.nanmean(corr) < 0.8  # the gradient map depends on the learned weights
    METHODS["input_itself"] = InputItself()
    try:
        constant = explain(policy, obs, "input_itself", "action")
        np.testing.assert_allclose(randomization_rank_corr(policy, constant), 1.0)
    finally:
        del METHODS["input_itself"]
    # The policy itself is untouched: same outputs, and (graph mode) no new ops.
    np.testing.assert_allclose(explain(policy, obs, "gradient", "action").values, gradient.values)
    if FRAMEWORK == "tf":
        assert len(policy.get_session().graph.get_operations()) == ops_before


def test_deletion_on_a_trained_policy_beats_random_order(trained):
    policy = trained("CartPole-v1").get_policy()
    obs = rollout_observations(trained("CartPole-v1"), n=64)
    attribution = explain(policy, obs, "gradient_x_input", "value")
    by_map, by_chance = deletion_auc(policy, attribution)
    assert np.nanmean(by_map) < np.nanmean(by_chance)
    assert by_map.shape == (64,)
    result = deletion_test(policy, attribution)
    np.testing.assert_array_equal(result.by_map, by_map)
    assert 0 <= result.score() < result.score("by_chance") <= 1


def test_agreement_between_methods(trained):
    policy = trained("CartPole-v1").get_policy()
    obs = rollout_observations(trained("CartPole-v1"), n=32)
    ig = explain(policy, obs, "integrated_gradients", "value")
    gxi = explain(policy, obs, "gradient_x_input", "value")
    agreement = rank_agreement(ig, gxi)
    assert agreement.shape == (32,) and np.nanmean(agreement) > 0.5
    with pytest.raises(ValueError, match="same observations and target"):
        rank_agreement(ig, explain(policy, obs, "gradient", "action"))
    with pytest.raises(ValueError, match="needs Integrated Gradients"):
        completeness_error(gxi)
    assert completeness_error(ig) < 0.01
