"""Dict, Discrete/MultiDiscrete and image observations, MultiDiscrete actions, mixed policies:
real short trainings with the callback, event files read back, values checked."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import ppo_config
from envs import DictImageEnv, DictObservationEnv, ImageEnv, MultiDiscreteEnv
from tb_events import decode_png, load, scalars

from rllib_saliency import SaliencyCallbacks, explain
from rllib_saliency.callbacks import _saliency_callbacks

pytestmark = pytest.mark.slow


def last_samples(algo, policy_id="default_policy"):
    return _saliency_callbacks(algo.env_runner.callbacks).last_explained[policy_id]


def test_dict_observations_are_named_by_key_path_with_shares(ray_cluster, tmp_path):
    config = (
        ppo_config()
        .environment(DictObservationEnv)
        .callbacks(
            SaliencyCallbacks.configure(
                every=1, methods=("gradient",), targets=("action",), logdir=str(tmp_path)
            )
        )
    )
    algo = config.build_algo()
    try:
        result = algo.train()
        step = result["timesteps_total"]
        events = load(str(tmp_path), algo)
        prefix = "saliency/default_policy/action/gradient"
        obs, _ = last_samples(algo)
        attribution = explain(algo.get_policy(), obs, "gradient", "action", structured=True)
        nested = attribution.structured
        assert set(nested) == {"inventory", "pos", "vel"}
        assert nested["pos"].shape == (len(obs), 2) and nested["inventory"].shape == (len(obs),)
        expected = {f"pos.{i}": np.abs(nested["pos"][:, i]).mean() for i in range(2)}
        expected |= {f"vel.{i}": np.abs(nested["vel"][:, i]).mean() for i in range(3)}
        # Discrete parts: the attribution of the one-hot slot that was active.
        expected["inventory"] = np.abs(nested["inventory"]).mean()
        for name, value in expected.items():
            assert scalars(events, f"{prefix}/mean_abs/{name}")[step] == pytest.approx(value, rel=1e-4)
        total = sum(expected.values())
        pos_share = (expected["pos.0"] + expected["pos.1"]) / total
        assert scalars(events, f"{prefix}/share/pos")[step] == pytest.approx(pos_share, rel=1e-4)
        shares = [scalars(events, f"{prefix}/share/{k}")[step] for k in ("pos", "vel", "inventory")]
        assert sum(shares) == pytest.approx(1.0, rel=1e-5)
        # The flat attribution's columns are the nested ones, in RLlib's (sorted-key) order.
        np.testing.assert_array_equal(attribution.values[:, 3:5], nested["pos"])
    finally:
        algo.stop()


def test_multi_discrete_observations_and_actions(ray_cluster, tmp_path):
    config = (
        ppo_config()
        .environment(MultiDiscreteEnv)
        .callbacks(
            SaliencyCallbacks.configure(
                every=1,
                methods=("gradient",), targets=("action", "logp"), logdir=str(tmp_path)
            )
        )
    )
    algo = config.build_algo()
    try:
        result = algo.train()
        assert "errors" not in result["saliency"]
        tags = set(load(str(tmp_path)).Tags()["scalars"])
        for target in ("action_0", "action_1", "logp"):
            for feature in ("0", "1"):
                assert f"saliency/default_policy/{target}/gradient/mean_abs/{feature}" in tags
        policy = algo.get_policy()
        obs, _ = last_samples(algo)
        _, _, extra = policy.compute_actions(obs, explore=False)
        logits = extra["action_dist_inputs"]
        # action_1 is the greedy logit of the second sub-action (columns 2..4).
        np.testing.assert_allclose(
            explain(policy, obs, "gradient", "action_1").target_values, logits[:, 2:5].max(axis=1), atol=1e-5
        )
    finally:
        algo.stop()


def central_differences(policy, obs: np.ndarray, pixels: list[tuple[int, int, int]], column: np.ndarray):
    # The policy feeds observations through a uint8 placeholder: steps must be whole
    # numbers and stay inside [0, 255] (the test moves pixel values to [64, 191] first).
    eps = 2.0
    out = []
    for pixel in pixels:
        step = np.zeros_like(obs)
        step[(slice(None), *pixel)] = eps
        plus = policy.compute_actions(obs + step, explore=False)[2]["action_dist_inputs"]
        minus = policy.compute_actions(obs - step, explore=False)[2]["action_dist_inputs"]
        rows = np.arange(len(obs))
        out.append((plus[rows, column] - minus[rows, column]) / (2 * eps))
    return np.stack(out, axis=1)


def test_image_observations_grid_and_finite_differences(ray_cluster, tmp_path):
    config = (
        ppo_config()
        .environment(ImageEnv)
        # tanh instead of ReLU: smooth, so finite differences with whole-number steps
        # (the policy's uint8 input) do not cross activation kinks.
        .training(
            train_batch_size=128,
            minibatch_size=64,
            num_epochs=1,
            model={"conv_activation": "tanh", "post_fcnet_activation": "tanh"},
        )
        .callbacks(
            SaliencyCallbacks.configure(
                every=1,
                methods=("gradient",),
                targets=("action",),
                max_images=3,
                frame_maps=True,
                logdir=str(tmp_path),
            )
        )
    )
    algo = config.build_algo()
    try:
        result = algo.train()
        events = load(str(tmp_path), algo)
        step = result["timesteps_total"]
        prefix = "saliency/default_policy/action/gradient"
        # One scalar per stacked frame, not one per pixel.
        scalar_tags = [t for t in events.Tags()["scalars"] if t.startswith(f"{prefix}/mean_abs/")]
        assert sorted(scalar_tags) == [f"{prefix}/mean_abs/c{k}" for k in range(4)]
        # Deletion removes pixels in chunks on images too.
        assert np.isfinite(scalars(events, f"{prefix}/trust/deletion_auc_random")[step])
        (grid,) = events.Images(f"{prefix}/importance")
        pixels = decode_png(grid)
        assert pixels.shape[0] > 3 * 100 and pixels.shape[1] > 6 * 100  # 3 rows × (overlay, map, 4 frames)
        assert pixels.std() > 10
        policy = algo.get_policy()
        obs, _ = last_samples(algo)
        obs = (obs[:8] // 2 + 64).astype(np.float32)
        attribution = explain(policy, obs, "gradient", "action")
        logged = [scalars(events, f"{prefix}/mean_abs/c{k}")[step] for k in range(4)]
        assert all(v > 0 for v in logged)
        greedy = np.argmax(policy.compute_actions(obs, explore=False)[2]["action_dist_inputs"], axis=1)
        picked = [(12, 20, 3), (13, 5, 3), (30, 30, 0), (11, 35, 2)]
        numeric = central_differences(policy, obs, picked, greedy)
        analytic = np.stack([attribution.values[(slice(None), *p)] for p in picked], axis=1)
        assert np.abs(numeric).max() > 1e-5
        np.testing.assert_allclose(analytic, numeric, rtol=0.05, atol=2e-5)
    finally:
        algo.stop()


def test_non_tf_policies_are_skipped_with_one_warning(ray_cluster, tmp_path, caplog):
    from ray.rllib.examples._old_api_stack.policy.random_policy import RandomPolicy
    from ray.rllib.examples.envs.classes.multi_agent import MultiAgentCartPole
    from ray.rllib.policy.policy import PolicySpec

    config = (
        ppo_config()
        .environment(MultiAgentCartPole, env_config={"num_agents": 2})
        .multi_agent(
            policies={"learner": PolicySpec(), "random": PolicySpec(policy_class=RandomPolicy)},
            policy_mapping_fn=lambda agent_id, *a, **k: "learner" if agent_id == 0 else "random",
            policies_to_train=["learner"],
        )
        .callbacks(
            SaliencyCallbacks.configure(
                every=1, methods=("gradient",), targets=("value",), logdir=str(tmp_path)
            )
        )
    )
    algo = config.build_algo()
    try:
        with caplog.at_level(logging.WARNING, logger="rllib_saliency"):
            results = [algo.train() for _ in range(2)]
        tags = set(load(str(tmp_path)).Tags()["scalars"])
        assert "saliency/learner/value/gradient/mean_abs/f0" in tags
        assert not [t for t in tags if t.startswith("saliency/random/")]
        warnings = [r.getMessage() for r in caplog.records if r.name == "rllib_saliency"]
        assert len(warnings) == 1 and "'random'" in warnings[0] and "skipped" in warnings[0]
        assert "errors" not in results[-1]["saliency"]
    finally:
        algo.stop()


def test_dict_with_an_image_and_a_vector(ray_cluster, tmp_path):
    """RLlib's complex input net: the image part as a heatmap grid, the vector part as bars."""
    config = (
        ppo_config()
        .environment(DictImageEnv)
        .training(model={"conv_filters": [[8, [4, 4], 2], [16, [8, 8], 1]]})
        .callbacks(
            SaliencyCallbacks.configure(
                every=1,
                methods=("gradient",), targets=("action",), max_images=3, logdir=str(tmp_path)
            )
        )
    )
    algo = config.build_algo()
    try:
        assert type(algo.get_policy().model).__name__ == "ComplexInputNetwork"
        result = algo.train()
        assert "errors" not in result["saliency"]
        events = load(str(tmp_path), algo)
        step = result["timesteps_total"]
        prefix = "saliency/default_policy/action/gradient"
        for feature in ("camera", "pos.0", "pos.1"):
            assert step in scalars(events, f"{prefix}/mean_abs/{feature}")
        assert step in scalars(events, f"{prefix}/share/camera")
        (bars,) = events.Images(f"{prefix}/importance")
        (grid,) = events.Images(f"{prefix}/importance/camera")
        assert decode_png(bars).std() > 10
        pixels = decode_png(grid)
        assert pixels.shape[0] > 3 * 100 and pixels.std() > 10  # 3 samples, one row each
        # The camera scalar is the mean |attribution| over its pixels.
        obs, _ = last_samples(algo)
        nested = explain(algo.get_policy(), obs, "gradient", "action", structured=True).structured
        expected = np.abs(nested["camera"]).mean()
        assert scalars(events, f"{prefix}/mean_abs/camera")[step] == pytest.approx(expected, rel=1e-4)
    finally:
        algo.stop()
