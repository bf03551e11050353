"""``episode_every`` on the new API stack: the driver's env runner plays one greedy episode, the
learner's module computes both heads' maps; GIF in TensorBoard, explorer page beside the events; a
failure inside never stops training (the old stack's tests: tests/test_callbacks_episodes.py)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import learner_module, new_ppo_config
from tb_events import load
from test_callbacks_episodes import MAX_STEPS, TAG, check_episodes

from rllib_saliency import SaliencyCallbacks

pytestmark = pytest.mark.slow


def test_episodes_are_logged_as_gif_and_page(ray_cluster, tmp_path):
    logdir = str(tmp_path / "events")
    config = new_ppo_config().callbacks(
        SaliencyCallbacks.configure(
            methods=("gradient",),
            targets=("action",),
            logdir=logdir,
            episode_every=1,
            episode_max_steps=MAX_STEPS,
        )
    )
    algo = config.build_algo()
    try:
        results = [algo.train() for _ in range(2)]
        # The episode is played by the driver's env runner's module: it holds the learner's weights.
        played = algo.get_module().get_state(inference_only=True)
        learned = learner_module(algo).get_state(inference_only=True)
        assert played.keys() == learned.keys()
        for key, value in played.items():
            np.testing.assert_allclose(np.asarray(value), np.asarray(learned[key]), err_msg=key)
    finally:
        algo.stop()
    check_episodes(logdir, results)


def test_a_failing_episode_never_stops_training(ray_cluster, tmp_path, monkeypatch, caplog):
    from rllib_saliency.stacks import new

    def broken(*args, **kwargs):
        raise RuntimeError("the episode's env is gone")

    monkeypatch.setattr(new, "episode_data", broken)
    logdir = str(tmp_path / "events")
    config = new_ppo_config().callbacks(
        SaliencyCallbacks.configure(
            methods=("gradient",), targets=("action",), logdir=logdir, episode_every=1, episode_max_steps=5
        )
    )
    algo = config.build_algo()
    try:
        with caplog.at_level(logging.ERROR, logger="rllib_saliency"):
            results = [algo.train() for _ in range(2)]
    finally:
        algo.stop()
    assert [r["training_iteration"] for r in results] == [1, 2]
    assert [r["saliency"]["errors"] for r in results] == [1, 2]
    assert caplog.text.count("training episode failed") == 1
    assert "the episode's env is gone" in caplog.text
    for result in results:
        assert any(k.startswith("default_policy/action/gradient/mean_abs/") for k in result["saliency"])
    assert TAG not in load(logdir).Tags()["images"]
