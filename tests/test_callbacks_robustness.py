"""SaliencyCallbacks never breaks training: failures, restarts, checkpoints, composition."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tensorflow as tf
from conftest import ppo_config
from ray.rllib.models import ModelCatalog
from ray.rllib.models.tf.tf_modelv2 import TFModelV2
from ray.rllib.policy.view_requirement import ViewRequirement
from tb_events import load, scalars

from rllib_saliency import SaliencyCallbacks

pytestmark = pytest.mark.slow

TAG = "saliency/default_policy/action/gradient/mean_abs/f2"


def saliency_logs(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "rllib_saliency"]


def test_unwritable_logdir_keeps_training_and_results(ray_cluster, tmp_path, caplog):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    config = ppo_config().callbacks(
        SaliencyCallbacks.configure(
            every=1, methods=("gradient",), targets=("action",), logdir=str(blocker / "logs")
        )
    )
    algo = config.build_algo()
    try:
        with caplog.at_level(logging.ERROR, logger="rllib_saliency"):
            results = [algo.train() for _ in range(2)]
        for result in results:
            assert np.isfinite(result["env_runners"]["episode_return_mean"])
            assert float(result["saliency"]["default_policy/action/gradient/mean_abs/f2"]) > 0
        assert results[-1]["saliency"]["errors"] == 2
        opening = [m for m in saliency_logs(caplog) if "opening the TensorBoard log dir" in m]
        assert len(opening) == 1 and "NotADirectoryError" in opening[0]  # logged once, with the traceback
    finally:
        algo.stop()


class FrameStackingModel(TFModelV2):
    """Reads the last 3 observations through a trajectory view ("prev_n_obs"), as in
    RLlib's frame-stacking examples: an input explain() does not feed."""

    def __init__(self, obs_space, action_space, num_outputs, model_config, name):
        super().__init__(obs_space, action_space, num_outputs, model_config, name)
        self.view_requirements["prev_n_obs"] = ViewRequirement(data_col="obs", shift="-2:0", space=obs_space)
        inputs = tf.keras.layers.Input(shape=(3 * obs_space.shape[0],))
        logits = tf.keras.layers.Dense(num_outputs)(inputs)
        value = tf.keras.layers.Dense(1)(inputs)
        self.base_model = tf.keras.Model(inputs, [logits, value])

    def forward(self, input_dict, state, seq_lens):
        stacked = tf.reshape(tf.cast(input_dict["prev_n_obs"], tf.float32), [-1, 3 * self.obs_space.shape[0]])
        logits, self._value = self.base_model(stacked)
        return logits, state

    def value_function(self):
        return tf.reshape(self._value, [-1])


def test_a_model_the_engine_cannot_handle_is_skipped(ray_cluster, tmp_path, caplog):
    ModelCatalog.register_custom_model("frame_stacking", FrameStackingModel)
    config = ppo_config(model={"custom_model": "frame_stacking"}).callbacks(
        SaliencyCallbacks.configure(every=1, methods=("gradient",), targets=("action",), logdir=str(tmp_path))
    )
    algo = config.build_algo()
    try:
        with caplog.at_level(logging.ERROR, logger="rllib_saliency"):
            results = [algo.train() for _ in range(2)]
        assert results[-1]["training_iteration"] == 2
        assert results[-1]["saliency"]["errors"] == 1  # reported once, then the policy is skipped
        messages = saliency_logs(caplog)
        assert len(messages) == 1 and "reads ['prev_n_obs'] from the sample batch" in messages[0]
    finally:
        algo.stop()


def test_images_render_off_the_training_thread_and_a_render_failure_keeps_training(
    ray_cluster, tmp_path, caplog, monkeypatch
):
    """Charts are drawn on the callback's image thread (training does not wait for them); a
    chart that fails to draw is logged and counted, and the scalars of every step are written."""
    import threading

    from rllib_saliency import render

    drawn_on: list[str] = []
    draw = render.importance_chart

    def importance_chart(*args, **kwargs):
        drawn_on.append(threading.current_thread().name)
        if len(drawn_on) > 1:
            raise RuntimeError("no fonts")
        return draw(*args, **kwargs)

    monkeypatch.setattr(render, "importance_chart", importance_chart)
    config = ppo_config().callbacks(
        SaliencyCallbacks.configure(
            every=1,
            methods=("gradient",), targets=("action",), image_every=1, logdir=str(tmp_path)
        )
    )
    algo = config.build_algo()
    try:
        with caplog.at_level(logging.ERROR, logger="rllib_saliency"):
            results = [algo.train() for _ in range(3)]
        events = load(str(tmp_path), algo)
    finally:
        algo.stop()
    assert drawn_on and all(name.startswith("rllib-saliency-images") for name in drawn_on)
    assert threading.current_thread().name not in drawn_on
    steps = [r["timesteps_total"] for r in results]
    assert sorted(scalars(events, TAG)) == steps
    assert [e.step for e in events.Images("saliency/default_policy/action/gradient/importance")] == steps[:1]
    # The failure of computation 2 is counted in the result of computation 3 (it renders meanwhile).
    assert results[2]["saliency"]["errors"] >= 1
    assert any("rendering images failed" in m for m in saliency_logs(caplog))
