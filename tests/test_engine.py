"""explain() on real PPO policies (graph or eager, per RLLIB_SALIENCY_TEST_FRAMEWORK)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FRAMEWORK, rollout_observations

from rllib_saliency import explain
from rllib_saliency.backends import backend_for

ENVS = ["CartPole-v1", "Pendulum-v1"]


def policy_outputs(policy, obs: np.ndarray) -> dict[str, np.ndarray]:
    """The policy's own forward outputs (through RLlib, not through the engine)."""
    _, _, extra = policy.compute_actions(obs, explore=False)
    return {"dist_inputs": extra["action_dist_inputs"], "value": extra["vf_preds"]}


def reference_target(policy, obs: np.ndarray, target: str, x0: np.ndarray) -> np.ndarray:
    """The target computed through the policy itself; per-sample choices fixed at ``x0``."""
    outputs = policy_outputs(policy, obs)
    if target == "value":
        return outputs["value"]
    if target == "logp":
        greedy, _, _ = policy.compute_actions(x0, explore=False)
        return np.asarray(policy.compute_log_likelihoods(greedy, obs))
    if target == "action":
        column = np.argmax(policy_outputs(policy, x0)["dist_inputs"], axis=1)
        if not hasattr(policy.action_space, "n"):
            column = np.zeros(len(obs), int)
    else:
        column = np.full(len(obs), int(target.split("_")[1]))
    return outputs["dist_inputs"][np.arange(len(obs)), column]


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("target", ["action", "action_0", "logp", "value"])
def test_gradient_matches_central_finite_differences(trained, env, target):
    policy = trained(env).get_policy()
    obs = rollout_observations(trained(env), n=16)
    attribution = explain(policy, obs, "gradient", target)
    # float32 forward passes: with eps=5e-3 round-off is ~1e-7*|f|/eps ≈ 2e-5*|f| and
    # truncation eps²/6*|f'''| is ~4e-6 for these tanh networks, so 2e-4 + 1% is
    # loose enough for noise and tight enough to catch a wrong or missing term.
    eps = 5e-3
    numeric = np.zeros_like(obs)
    for j in range(obs.shape[1]):
        step = np.zeros_like(obs)
        step[:, j] = eps
        plus = reference_target(policy, obs + step, target, obs)
        minus = reference_target(policy, obs - step, target, obs)
        numeric[:, j] = (plus - minus) / (2 * eps)
    assert np.abs(numeric).max() > 1e-3, "finite differences are ~0: the check would be vacuous"
    np.testing.assert_allclose(attribution.values, numeric, rtol=1e-2, atol=2e-4)


@pytest.mark.parametrize("env", ENVS)
def test_target_values_match_the_policys_own_outputs(trained, env):
    policy = trained(env).get_policy()
    obs = rollout_observations(trained(env), n=64)
    outputs = policy_outputs(policy, obs)
    for k in range(2 if env == "CartPole-v1" else 1):
        values = explain(policy, obs, "gradient", f"action_{k}").target_values
        np.testing.assert_allclose(values, outputs["dist_inputs"][:, k], atol=1e-5)
    np.testing.assert_allclose(
        explain(policy, obs, "gradient", "value").target_values, outputs["value"], atol=1e-5
    )
    # With explore=False RLlib reports action_logp=0, so ask the policy's own likelihoods.
    greedy, _, _ = policy.compute_actions(obs, explore=False)
    logp = explain(policy, obs, "gradient", "logp").target_values
    np.testing.assert_allclose(logp, policy.compute_log_likelihoods(greedy, obs), atol=1e-5)
    explicit = explain(policy, obs, "gradient", "logp", actions=greedy).target_values
    np.testing.assert_allclose(explicit, logp, atol=1e-6)


def test_gradient_x_input_and_zero_noise_smoothgrad(trained):
    policy = trained("CartPole-v1").get_policy()
    obs = rollout_observations(trained("CartPole-v1"), n=64)
    gradient = explain(policy, obs, "gradient").values
    np.testing.assert_allclose(explain(policy, obs, "gradient_x_input").values, gradient * obs, rtol=1e-6)
    smooth = explain(policy, obs, "smoothgrad", noise_level=0.0, n_samples=3).values
    np.testing.assert_allclose(smooth, gradient, rtol=1e-5, atol=1e-8)
    noisy = explain(policy, obs, "smoothgrad", seed=3).values
    np.testing.assert_array_equal(noisy, explain(policy, obs, "smoothgrad", seed=3).values)
    assert not np.allclose(noisy, gradient)


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("baseline", ["zeros", "mean"])
def test_integrated_gradients_completeness_at_default_steps(trained, env, baseline):
    policy = trained(env).get_policy()
    obs = rollout_observations(trained(env), n=64)
    base = np.zeros_like(obs) if baseline == "zeros" else np.repeat(obs.mean(0, keepdims=True), len(obs), 0)
    for target in ("action", "value", "logp"):
        attribution = explain(policy, obs, "integrated_gradients", target, baseline=baseline)
        # f(x) - f(baseline) through the policy itself, with the action chosen at x.
        change = reference_target(policy, obs, target, obs) - reference_target(policy, base, target, obs)
        np.testing.assert_allclose(attribution.values.sum(axis=1) - attribution.delta, change, atol=1e-5)
        assert np.all(np.abs(attribution.delta) <= 0.01 * np.abs(change) + 1e-6)
        assert np.abs(attribution.delta).mean() <= 0.01 * np.abs(change).mean()


def test_integrated_gradients_array_baseline(trained):
    policy = trained("CartPole-v1").get_policy()
    obs = rollout_observations(trained("CartPole-v1"), n=8)
    baseline = obs[0]
    attribution = explain(policy, obs, "integrated_gradients", "value", baseline=baseline)
    assert np.allclose(attribution.values[0], 0.0) and abs(attribution.delta[0]) < 1e-6


def test_occlusion_matches_direct_reevaluation(trained):
    policy = trained("CartPole-v1").get_policy()
    obs = rollout_observations(trained("CartPole-v1"), n=32)
    attribution = explain(policy, obs, "occlusion", "value")
    mean = obs.mean(axis=0)
    base_value = policy_outputs(policy, obs)["value"]
    for j in range(obs.shape[1]):
        occluded = obs.copy()
        occluded[:, j] = mean[j]
        expected = base_value - policy_outputs(policy, occluded)["value"]
        np.testing.assert_allclose(attribution.values[:, j], expected, atol=1e-5)
    zeros = explain(policy, obs, "occlusion", "action_1", baseline="zeros")
    occluded = obs.copy()
    occluded[:, 2] = 0.0
    expected = (
        policy_outputs(policy, obs)["dist_inputs"][:, 1]
        - policy_outputs(policy, occluded)["dist_inputs"][:, 1]
    )
    np.testing.assert_allclose(zeros.values[:, 2], expected, atol=1e-5)


def test_chunking_gives_the_same_result(trained):
    policy = trained("CartPole-v1").get_policy()
    obs = rollout_observations(trained("CartPole-v1"), n=100)
    for method in ("gradient", "integrated_gradients", "occlusion"):
        whole = explain(policy, obs, method, "logp", batch_size=1024)
        chunked = explain(policy, obs, method, "logp", batch_size=7)
        np.testing.assert_allclose(chunked.values, whole.values, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(chunked.target_values, whole.target_values, atol=1e-6)


def test_non_finite_rows_do_not_poison_the_others(trained):
    policy = trained("CartPole-v1").get_policy()
    obs = rollout_observations(trained("CartPole-v1"), n=20)
    clean = explain(policy, obs, "smoothgrad")
    dirty_obs = obs.copy()
    dirty_obs[3, 1] = np.nan
    dirty_obs[7, 0] = np.inf
    dirty = explain(policy, np.concatenate([dirty_obs, obs[:0]]), "smoothgrad")
    bad = np.zeros(len(obs), bool)
    bad[[3, 7]] = True
    assert np.all(np.isnan(dirty.values[bad])) and np.all(np.isnan(dirty.target_values[bad]))
    assert np.all(np.isfinite(dirty.values[~bad])) and np.all(np.isfinite(dirty.target_values[~bad]))
    exact = explain(policy, obs, "gradient").values
    # The same rows in a batch of another size: equal up to float32 roundoff of other BLAS paths.
    np.testing.assert_allclose(
        explain(policy, dirty_obs, "gradient").values[~bad], exact[~bad], rtol=1e-6, atol=1e-8
    )
    # SmoothGrad's noise scale comes from the finite rows only, so it stays finite and close.
    assert clean.values.shape == dirty.values.shape


@pytest.mark.skipif(FRAMEWORK != "tf", reason="graph-mode invariant")
def test_graph_mode_adds_no_ops_to_the_policy_graph_ever(trained):
    policy = trained("Pendulum-v1").get_policy()
    obs = rollout_observations(trained("Pendulum-v1"), n=64)
    graph = policy.get_session().graph
    before = len(graph.get_operations())
    rng = np.random.default_rng(0)
    methods = {
        "gradient": {},
        "gradient_x_input": {},
        "smoothgrad": {"n_samples": 2},
        "integrated_gradients": {"steps": 3},
        "occlusion": {},
    }
    targets = ["action", "action_0", "logp", "value"]
    for call in range(1000):
        method = list(methods)[call % len(methods)]
        n = int(rng.integers(1, 64))
        explain(
            policy,
            obs[:n],
            method,
            targets[call % len(targets)],
            batch_size=int(rng.integers(1, 70)),
            **methods[method],
        )
    assert len(graph.get_operations()) == before
    policy.compute_actions(obs, explore=False)  # the policy still works as before
    assert len(graph.get_operations()) == before


@pytest.mark.skipif(FRAMEWORK != "tf2", reason="eager-mode tracing")
def test_eager_mode_does_not_retrace_for_new_batch_sizes(trained):
    policy = trained("CartPole-v1").get_policy()
    obs = rollout_observations(trained("CartPole-v1"), n=64)
    backend = backend_for(policy)
    for target in ("action", "logp", "value"):
        explain(policy, obs[:5], "integrated_gradients", target, steps=2)
    traces = backend.trace_count
    for n in range(1, 64, 3):
        for target in ("action", "logp", "value"):
            explain(policy, obs[:n], "integrated_gradients", target, steps=2)
    assert backend.trace_count == traces
    # forward + (value, value-and-gradient) per target kind: a small fixed bound.
    assert traces <= 1 + 2 * 3


def test_weights_are_read_at_every_call(trained):
    """After the weights change, explain() uses the new ones (graph mode copies them each call)."""
    algo = trained("CartPole-v1")
    policy = algo.get_policy()
    obs = rollout_observations(algo, n=16)
    weights = policy.get_weights()
    if isinstance(weights, dict):  # graph mode: name -> array; eager mode: a list
        scaled = {k: v * 0.5 for k, v in weights.items()}
    else:
        scaled = [v * 0.5 for v in weights]
    try:
        policy.set_weights(scaled)
        expected = policy_outputs(policy, obs)["value"]
        np.testing.assert_allclose(
            explain(policy, obs, "gradient", "value").target_values, expected, atol=1e-5
        )
    finally:
        policy.set_weights(weights)


def test_explain_accepts_the_algorithm(trained):
    """The same one way as on the new stack: explain(algo, ...) explains the driver's policy (the one
    that learns on the old stack); learner_module(algo) is that policy."""
    from rllib_saliency import learner_module, maximize_activation

    algo = trained("CartPole-v1")
    obs = rollout_observations(algo, n=16)
    for target in ("action", "value"):
        np.testing.assert_array_equal(
            explain(algo, obs, "gradient", target).values,
            explain(algo.get_policy(), obs, "gradient", target).values,
        )
    assert learner_module(algo) is algo.get_policy()
    assert maximize_activation(algo, "value", obs=obs, steps=3, n_starts=2).inputs.shape == (2, 4)
    with pytest.raises(ValueError, match=r"policy_id='p9' is not one of this algorithm's models"):
        explain(algo, obs, policy_id="p9")
