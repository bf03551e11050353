"""explain() on real PPO policies (graph or eager, per RLLIB_SALIENCY_TEST_FRAMEWORK): the old stack's
own engine tests. The contracts both stacks keep (finite differences, target values, IG
completeness, occlusion, gradient×input, SmoothGrad) are in tests/contracts/test_engine_contracts.py."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FRAMEWORK, rollout_observations
from reference_outputs import outputs_of

from rllib_saliency import explain
from rllib_saliency.backends import backend_for


def test_integrated_gradients_array_baseline(trained):
    policy = trained("CartPole-v1").get_policy()
    obs = rollout_observations(trained("CartPole-v1"), n=8)
    baseline = obs[0]
    attribution = explain(policy, obs, "integrated_gradients", "value", baseline=baseline)
    assert np.allclose(attribution.values[0], 0.0) and abs(attribution.delta[0]) < 1e-6


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
        expected = outputs_of(policy).value(obs)
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
