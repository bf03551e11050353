"""A real Atari game through RLlib's DeepMind preprocessing and vision network (tiny run)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from conftest import ppo_config
from tb_events import decode_png, load, scalars

from rllib_saliency import SaliencyCallbacks, explain
from rllib_saliency.callbacks import _saliency_callbacks

pytestmark = pytest.mark.slow
ale_py = pytest.importorskip("ale_py", reason="the atari extra (ale-py) is part of the test install")


def make_pong(config):
    gym.register_envs(ale_py)
    return gym.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.0)


def test_pong_heatmaps_over_the_screen(ray_cluster, tmp_path):
    from ray import tune

    tune.register_env("pong_for_test", make_pong)
    config = (
        ppo_config()
        .environment("pong_for_test")
        .env_runners(rollout_fragment_length=64)
        .training(train_batch_size=64, minibatch_size=32, num_epochs=1)
        .callbacks(
            SaliencyCallbacks.configure(
                every=1,
                methods=("gradient", "occlusion"),
                targets=("action",),
                num_samples=4,
                max_images=2,
                method_options={"occlusion": {"patch_size": 14}},
                logdir=str(tmp_path),
            )
        )
    )
    algo = config.build_algo()
    try:
        policy = algo.get_policy()
        assert policy.observation_space.shape == (84, 84, 4)  # RLlib's DeepMind preprocessing
        result = algo.train()
        assert "errors" not in result["saliency"]
        events = load(str(tmp_path), algo)
        obs, _ = _saliency_callbacks(algo.env_runner.callbacks).last_explained["default_policy"]
        for method in ("gradient", "occlusion"):
            prefix = f"saliency/default_policy/action/{method}"
            logged = [scalars(events, f"{prefix}/mean_abs/c{k}")[result["timesteps_total"]] for k in range(4)]
            attribution = explain(
                policy, obs, method, "action", **({"patch_size": 14} if method == "occlusion" else {})
            )
            per_frame = np.abs(attribution.values).mean(axis=(0, 1, 2))
            np.testing.assert_allclose(logged, per_frame, rtol=1e-3)
            (image,) = events.Images(f"{prefix}/importance")
            pixels = decode_png(image)
            assert pixels.shape == (image.height, image.width, 3) and pixels.std() > 10
    finally:
        algo.stop()
