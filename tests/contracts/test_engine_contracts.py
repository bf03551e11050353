"""explain() on real trained PPO (CartPole-v1: Discrete actions, Pendulum-v1: Box actions), checked
against the model's own outputs through RLlib (tests/reference_outputs.py): contracts of both stacks,
run on the stack of this pytest process (old: the TF policy, graph or eager; new: the learner's torch
module), on the model explain(algo, ...) uses, ``current_model(algo, "default_policy")``.

Stack-only engine tests stay in tests/test_engine.py (graph op count, eager retracing, chunking, ...)
and tests/new_stack/test_torch_engine.py (float64 precision, module state, the kept greedy pass, ...).
"""

from __future__ import annotations

import numpy as np
import pytest
from envs import env_observations
from reference_outputs import (
    check_action_follows_the_greedy_action,
    finite_differences,
    outputs_of,
    reference_target,
)

from rllib_saliency import explain
from rllib_saliency.api import current_model
from rllib_saliency.trust import completeness_error

ENVS = ["CartPole-v1", "Pendulum-v1"]
TARGETS = ["action", "action_0", "logp", "value"]


def model_of(trained, env: str):
    return current_model(trained(env), "default_policy")


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("target", TARGETS)
def test_gradient_matches_central_finite_differences(trained, env, target):
    model = model_of(trained, env)
    obs = env_observations(env, 16)
    attribution = explain(model, obs, "gradient", target)
    # float32 forward passes: with eps=5e-3 round-off is ~1e-7*|f|/eps ≈ 2e-5*|f| and
    # truncation eps²/6*|f'''| is ~4e-6 for these tanh networks, so 2e-4 + 1% is
    # loose enough for noise and tight enough to catch a wrong or missing term.
    numeric = finite_differences(outputs_of(model), obs, target, eps=5e-3, dtype=np.float32)
    assert np.abs(numeric).max() > 1e-3, "finite differences are ~0: the check would be vacuous"
    np.testing.assert_allclose(attribution.values, numeric, rtol=1e-2, atol=2e-4)


@pytest.mark.parametrize("env", ENVS)
def test_target_values_are_the_models_own_outputs(trained, env):
    model = model_of(trained, env)
    outputs = outputs_of(model)
    obs = env_observations(env, 64)
    dist_inputs = outputs.dist_inputs(obs)
    for k in range(dist_inputs.shape[1] if env == "CartPole-v1" else 1):
        values = explain(model, obs, "gradient", f"action_{k}").target_values
        np.testing.assert_allclose(values, dist_inputs[:, k], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        explain(model, obs, "gradient", "value").target_values, outputs.value(obs), rtol=1e-6, atol=1e-6
    )
    greedy = outputs.greedy(obs)
    logp = explain(model, obs, "gradient", "logp").target_values
    np.testing.assert_allclose(logp, outputs.logp(obs, greedy), rtol=1e-6, atol=1e-6)
    explicit = explain(model, obs, "gradient", "logp", actions=greedy).target_values
    np.testing.assert_allclose(explicit, logp, atol=1e-6)
    action = explain(model, obs, "gradient", "action")
    if env == "CartPole-v1":
        # The greedy action's logit: the largest one in every row, and its gradient is that column's.
        check_action_follows_the_greedy_action(model, obs, dist_inputs)
    else:
        # Box actions: "action" (and action_0) is the Gaussian mean, RLlib's greedy action.
        mean = greedy[:, 0]
        np.testing.assert_allclose(action.target_values, mean, rtol=1e-6, atol=1e-6)
        action_0 = explain(model, obs, "gradient", "action_0")
        np.testing.assert_allclose(action_0.target_values, mean, atol=1e-6)
        with pytest.raises(ValueError, match="action_0 .. action_0"):
            explain(model, obs, "gradient", "action_1")


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("baseline", ["zeros", "mean"])
def test_integrated_gradients_completeness_at_default_steps(trained, env, baseline):
    model = model_of(trained, env)
    outputs = outputs_of(model)
    obs = env_observations(env, 64)
    base = np.zeros_like(obs) if baseline == "zeros" else np.repeat(obs.mean(0, keepdims=True), len(obs), 0)
    for target in ("action", "value", "logp"):
        attribution = explain(model, obs, "integrated_gradients", target, baseline=baseline)
        # f(x) - f(baseline) through the model itself, with the action chosen at x.
        change = reference_target(outputs, obs, target, obs) - reference_target(outputs, base, target, obs)
        assert np.abs(change).mean() > 1e-3, "f(x) = f(baseline): the check would be vacuous"
        np.testing.assert_allclose(attribution.values.sum(axis=1) - attribution.delta, change, atol=1e-5)
        assert np.all(np.abs(attribution.delta) <= 0.01 * np.abs(change) + 1e-6), target
        assert np.abs(attribution.delta).mean() <= 0.01 * np.abs(change).mean()
        assert completeness_error(attribution) < 0.01


def test_occlusion_equals_direct_reevaluation(trained):
    model = model_of(trained, "CartPole-v1")
    outputs = outputs_of(model)
    obs = env_observations("CartPole-v1", 32)
    attribution = explain(model, obs, "occlusion", "value")
    mean = obs.mean(axis=0)
    for j in range(obs.shape[1]):
        occluded = obs.copy()
        occluded[:, j] = mean[j]
        expected = outputs.value(obs) - outputs.value(occluded)
        np.testing.assert_allclose(attribution.values[:, j], expected, atol=1e-5)
    zeros = explain(model, obs, "occlusion", "action_1", baseline="zeros")
    occluded = obs.copy()
    occluded[:, 2] = 0.0
    expected = outputs.dist_inputs(obs)[:, 1] - outputs.dist_inputs(occluded)[:, 1]
    np.testing.assert_allclose(zeros.values[:, 2], expected, atol=1e-5)


def test_gradient_x_input_and_smoothgrad(trained):
    model = model_of(trained, "CartPole-v1")
    obs = env_observations("CartPole-v1", 64)
    gradient = explain(model, obs, "gradient").values
    np.testing.assert_allclose(explain(model, obs, "gradient_x_input").values, gradient * obs, rtol=1e-6)
    smooth = explain(model, obs, "smoothgrad", noise_level=0.0, n_samples=3).values
    np.testing.assert_allclose(smooth, gradient, rtol=1e-5, atol=1e-8)
    noisy = explain(model, obs, "smoothgrad", seed=3).values
    np.testing.assert_array_equal(noisy, explain(model, obs, "smoothgrad", seed=3).values)
    assert not np.allclose(noisy, gradient)
    assert not np.allclose(noisy, explain(model, obs, "smoothgrad", seed=4).values)


@pytest.mark.parametrize("target", TARGETS)
def test_a_batch_of_only_non_finite_rows_gives_nan_not_an_error(trained, target):
    """Every row left out (NaN/inf observations): nothing to resolve or run, all results NaN."""
    model = model_of(trained, "CartPole-v1")
    obs = env_observations("CartPole-v1", 3)
    obs[:, 2] = [np.nan, np.inf, -np.inf]
    for method in ("gradient", "integrated_gradients", "smoothgrad"):
        attribution = explain(model, obs, method, target)
        assert np.isnan(attribution.values).all() and np.isnan(attribution.target_values).all(), method
        assert attribution.values.shape == obs.shape and not attribution.finite.any()
