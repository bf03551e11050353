"""Recurrent policies (LSTM, attention net): one-step saliency given the state recorded in the batch."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
from conftest import ATTENTION_MODEL, FRAMEWORK, ppo_config
from tb_events import load, scalars

from rllib_saliency import SaliencyCallbacks, explain
from rllib_saliency.backends.tf_eager import TFEagerBackend, untracked_variables
from rllib_saliency.callbacks import _saliency_callbacks
from rllib_saliency.recurrent import recurrent_layout
from rllib_saliency.stacks.old.batches import per_step_states

pytestmark = pytest.mark.slow

LSTM = {"use_lstm": True, "lstm_cell_size": 8, "max_seq_len": 8}
LSTM_PREVIOUS = {**LSTM, "lstm_use_prev_action": True, "lstm_use_prev_reward": True}
ATTENTION_PREVIOUS = {
    **ATTENTION_MODEL,
    "attention_num_transformer_units": 1,
    "attention_use_n_prev_actions": 2,
    "attention_use_n_prev_rewards": 2,
}
MODELS = {
    "lstm": LSTM,
    "attention": ATTENTION_MODEL,
    # Fed the previous action(s) and reward(s) too: held fixed like the state.
    "lstm_previous": LSTM_PREVIOUS,
}
STATE_SHAPES = {
    "lstm": [(8,), (8,)],
    "attention": [(5, 16), (5, 16)],
    "lstm_previous": [(8,), (8,), (), ()],
}


@pytest.fixture(scope="module", params=sorted(MODELS))
def recurrent_algo(request, ray_cluster, tmp_path_factory):
    logdir = tmp_path_factory.mktemp(request.param)
    config = ppo_config(model=MODELS[request.param]).callbacks(
        SaliencyCallbacks.configure(
            every=1,
            methods=("gradient", "integrated_gradients"), targets=("action", "logp"), logdir=str(logdir)
        )
    )
    algo = config.build_algo()
    result = algo.train()
    yield request.param, algo, result, logdir
    algo.stop()


def test_per_step_states_reproduce_the_sampled_outputs(recurrent_algo):
    kind, algo, _, _ = recurrent_algo
    batch = algo.env_runner.sample()
    batch = batch.as_multi_agent().policy_batches["default_policy"]
    policy = algo.get_policy()
    graph = policy.get_session().graph if FRAMEWORK == "tf" else None
    ops_before = len(graph.get_operations()) if graph is not None else 0
    states = per_step_states(batch, policy)
    layout = recurrent_layout(policy)
    previous = ("prev_actions", "prev_rewards") if kind.endswith("previous") else ()
    assert layout.names[layout.num_states :] == previous
    assert [s.shape for s in states] == [(len(batch), *shape) for shape in STATE_SHAPES[kind]]
    # The first sequence continues an episode from the previous sample() call, and
    # the batch's state_in for it is not quite the state RLlib acted from (seen:
    # LSTM row 0 of 256 off; attention: the first sequence off by up to 4e-3,
    # fading as the memory window moves past it), so it is left out. Every other
    # step gives exactly the logits RLlib computed while sampling.
    rest = slice(int(batch["seq_lens"][0]), None)
    for k in range(2):
        values = explain(policy, batch["obs"], "gradient", f"action_{k}", state=states).target_values
        np.testing.assert_allclose(values[rest], batch["action_dist_inputs"][rest, k], atol=1e-5)
        # The state matters: from the initial state the outputs are different.
        initial = explain(policy, batch["obs"], "gradient", f"action_{k}").target_values
        assert np.abs(initial[rest] - batch["action_dist_inputs"][rest, k]).max() > 1e-3
    # The same inputs by name.
    by_name = explain(
        policy, batch["obs"], "gradient", "action_0", state=dict(zip(layout.names, states, strict=True))
    )
    np.testing.assert_array_equal(
        by_name.target_values,
        explain(policy, batch["obs"], "gradient", "action_0", state=states).target_values,
    )
    if graph is not None:  # rebuilding the states and explaining added nothing to the policy's graph
        assert len(graph.get_operations()) == ops_before


def dist_inputs_through_policy(policy, obs, states):
    """One step per row from the given states, through RLlib's own forward pass.

    (compute_actions(state_batches=...) drops the states on eager policies in
    RLlib 2.60, so go through compute_actions_from_input_dict.)"""
    from ray.rllib.policy.sample_batch import SampleBatch

    batch = {"obs": obs, "seq_lens": np.ones(len(obs), np.int32)}
    batch |= dict(zip(recurrent_layout(policy).names, states, strict=True))
    _, _, extra = policy.compute_actions_from_input_dict(SampleBatch(batch), explore=False)
    return extra["action_dist_inputs"]


def test_gradient_given_the_state_matches_finite_differences(recurrent_algo):
    _, algo, _, _ = recurrent_algo
    policy = algo.get_policy()
    obs, _ = _saliency_callbacks(algo.env_runner.callbacks).last_explained["default_policy"]
    states = _saliency_callbacks(algo.env_runner.callbacks).last_states["default_policy"]
    obs, states = obs[:16], [s[:16] for s in states]
    attribution = explain(policy, obs, "gradient", "action_1", state=states)
    eps = 1e-3
    at_obs = dist_inputs_through_policy(policy, obs, states)[:, 1]
    forward, backward = np.zeros_like(obs), np.zeros_like(obs)
    for j in range(obs.shape[1]):
        step = np.zeros_like(obs)
        step[:, j] = eps
        forward[:, j] = (dist_inputs_through_policy(policy, obs + step, states)[:, 1] - at_obs) / eps
        backward[:, j] = (at_obs - dist_inputs_through_policy(policy, obs - step, states)[:, 1]) / eps
    # ReLU nets are piecewise smooth: the small attention net has kinks within eps
    # of about 30 % of these entries (CartPole observations are near 0), where no
    # finite difference tells the gradient. Check where the one-sided slopes agree.
    smooth = np.abs(forward - backward) < 5e-4 + 1e-2 * np.abs(forward)
    assert smooth.mean() > 0.5
    numeric = (forward + backward) / 2
    assert np.abs(numeric).max() > 1e-3
    np.testing.assert_allclose(attribution.values[smooth], numeric[smooth], rtol=1e-2, atol=5e-4)
    # The state matters: from the initial state the map differs.
    assert not np.allclose(explain(policy, obs, "gradient", "action_1").values, attribution.values)


def test_callback_logs_recurrent_policies(recurrent_algo):
    _, algo, result, logdir = recurrent_algo
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


def test_bad_state_is_a_clear_error(recurrent_algo, trained):
    kind, algo, _, _ = recurrent_algo
    obs = np.zeros((3, 4), np.float32)
    shapes = ", ".join(str((3, *shape)) for shape in STATE_SHAPES[kind])
    count = len(STATE_SHAPES[kind])
    with pytest.raises(
        ValueError, match=re.escape(f"state must be a list of {count} arrays of shapes [{shapes}]")
    ):
        explain(algo.get_policy(), obs, state=[np.zeros((3, 8))])
    with pytest.raises(ValueError, match="state is only for recurrent policies"):
        explain(trained("CartPole-v1").get_policy(), obs, state=[np.zeros((3, 8))])


@pytest.mark.skipif(FRAMEWORK != "tf2", reason="eager mode only: graph mode names variables uniquely")
def test_eager_variables_rllib_does_not_track_are_reported(recurrent_algo, caplog):
    kind, algo, _, _ = recurrent_algo
    model = algo.get_policy().model
    missing, total = untracked_variables(model)
    # RLlib's TFModelV2.variables() keys variables by name; the GTrXL's unnamed
    # add_weight variables share names in eager mode and all but one per name drop out.
    names = [v.name for v in model.variables()]
    assert len(names) == len(set(names)) == total - missing
    if kind.startswith("lstm"):
        assert missing == 0
        return
    assert missing > 0
    if kind == "attention":
        assert (missing, total) == (27, 66)
    with caplog.at_level(logging.WARNING, logger="rllib_saliency"):
        TFEagerBackend(algo.get_policy(), "default_policy")
    assert f"misses {missing} of the model's {total} variables" in caplog.text


def test_attention_fed_previous_action_windows_is_refused(ray_cluster):
    # RLlib 2.60 acts on [a(t-3), a(t-2)] for a "-2:-1" window but records
    # [a(t-2), a(t-1)] in the batch (seen while building this support: the
    # recorded window reproduces no sampled logit past a sequence's first step,
    # the older one does), so the step's inputs cannot be rebuilt faithfully.
    algo = ppo_config(model=ATTENTION_PREVIOUS).build_algo()
    try:
        with pytest.raises(
            TypeError, match=r"attention_use_n_prev_actions=2, attention_use_n_prev_rewards=2"
        ):
            explain(algo.get_policy(), np.zeros((2, 4), np.float32))
    finally:
        algo.stop()
