"""LSTM policies: one-step saliency given the recurrent state recorded in the batch."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ppo_config
from tb_events import load, scalars

from rllib_saliency import SaliencyCallbacks, explain
from rllib_saliency.callbacks import _saliency_callbacks
from rllib_saliency.sampler import per_step_states

pytestmark = pytest.mark.slow

LSTM = {"use_lstm": True, "lstm_cell_size": 8, "max_seq_len": 8}


@pytest.fixture(scope="module")
def lstm_algo(ray_cluster, tmp_path_factory):
    logdir = tmp_path_factory.mktemp("lstm")
    config = ppo_config(model=LSTM).callbacks(
        SaliencyCallbacks.configure(
            methods=("gradient", "integrated_gradients"), targets=("action", "logp"), logdir=str(logdir)
        )
    )
    algo = config.build_algo()
    result = algo.train()
    yield algo, result, logdir
    algo.stop()


def test_per_step_states_reproduce_the_sampled_outputs(lstm_algo):
    algo, _, _ = lstm_algo
    batch = algo.env_runner.sample()
    batch = batch.as_multi_agent().policy_batches["default_policy"]
    states = per_step_states(batch)
    assert [s.shape for s in states] == [(len(batch), 8), (len(batch), 8)]
    policy = algo.get_policy()
    for k in range(2):
        # The state rebuilt per step gives exactly the logits RLlib computed while sampling.
        # Row 0 continues an episode from the previous sample() call, and the batch's
        # state_in for it is not the state RLlib acted from (seen: 1 row of 256), so
        # it is left out; every other step matches.
        values = explain(policy, batch["obs"], "gradient", f"action_{k}", state=states).target_values
        np.testing.assert_allclose(values[1:], batch["action_dist_inputs"][1:, k], atol=1e-5)


def dist_inputs_through_policy(policy, obs, states):
    """One step per row from the given states, through RLlib's own forward pass.

    (compute_actions(state_batches=...) drops the states on eager policies in
    RLlib 2.60, so go through compute_actions_from_input_dict.)"""
    from ray.rllib.policy.sample_batch import SampleBatch

    batch = {"obs": obs, "seq_lens": np.ones(len(obs), np.int32)}
    batch |= {f"state_in_{i}": s for i, s in enumerate(states)}
    _, _, extra = policy.compute_actions_from_input_dict(SampleBatch(batch), explore=False)
    return extra["action_dist_inputs"]


def test_gradient_given_the_state_matches_finite_differences(lstm_algo):
    algo, _, _ = lstm_algo
    policy = algo.get_policy()
    obs, _ = _saliency_callbacks(algo.env_runner.callbacks).last_explained["default_policy"]
    states = _saliency_callbacks(algo.env_runner.callbacks).last_states["default_policy"]
    obs, states = obs[:16], [s[:16] for s in states]
    attribution = explain(policy, obs, "gradient", "action_1", state=states)
    eps = 5e-3  # see test_engine's finite-difference test for the tolerance
    numeric = np.zeros_like(obs)
    for j in range(obs.shape[1]):
        step = np.zeros_like(obs)
        step[:, j] = eps
        plus = dist_inputs_through_policy(policy, obs + step, states)
        minus = dist_inputs_through_policy(policy, obs - step, states)
        numeric[:, j] = (plus[:, 1] - minus[:, 1]) / (2 * eps)
    assert np.abs(numeric).max() > 1e-3
    np.testing.assert_allclose(attribution.values, numeric, rtol=1e-2, atol=2e-4)
    # The state matters: from the initial state the map differs.
    assert not np.allclose(explain(policy, obs, "gradient", "action_1").values, attribution.values)


def test_callback_logs_lstm_policies(lstm_algo):
    algo, result, logdir = lstm_algo
    assert "errors" not in result["saliency"]
    events = load(str(logdir))
    obs, actions = _saliency_callbacks(algo.env_runner.callbacks).last_explained["default_policy"]
    states = _saliency_callbacks(algo.env_runner.callbacks).last_states["default_policy"]
    attribution = explain(algo.get_policy(), obs, "gradient", "logp", actions=actions, state=states)
    logged = [
        scalars(events, f"saliency/default_policy/logp/gradient/mean_abs/f{j}")[result["timesteps_total"]]
        for j in range(4)
    ]
    np.testing.assert_allclose(logged, np.abs(attribution.values).mean(axis=0), rtol=1e-4)


def test_bad_state_is_a_clear_error(lstm_algo, trained):
    algo, _, _ = lstm_algo
    obs = np.zeros((3, 4), np.float32)
    with pytest.raises(
        ValueError, match=r"state must be a list of 2 arrays of shapes \[\(3, 8\), \(3, 8\)\]"
    ):
        explain(algo.get_policy(), obs, state=[np.zeros((3, 8))])
    with pytest.raises(ValueError, match="state is only for recurrent policies"):
        explain(trained("CartPole-v1").get_policy(), obs, state=[np.zeros((3, 8))])
