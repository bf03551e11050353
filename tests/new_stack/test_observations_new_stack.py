"""Observation kinds on the new stack, through RLlib's env-to-module connectors: the rows explained
are what the module saw (flattened Discrete/Dict observations, frame stacks of Atari frames), and
rows that are not are refused."""

from __future__ import annotations

import logging

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import learner_module, new_ppo_config
from envs import DictObservationEnv
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.connectors.env_to_module import FlattenObservations
from ray.rllib.core.columns import Columns
from tb_events import decode_png, load, scalars

from rllib_saliency import SaliencyCallbacks, explain
from rllib_saliency.callbacks import find_saliency_callbacks
from rllib_saliency.stacks.new.training import stacked_observations
from rllib_saliency.structure import component_values
from rllib_saliency.summaries import feature_layout

pytestmark = pytest.mark.slow


def flatten(env, spaces=None, device=None):
    return FlattenObservations()


def logged_by_name(events, prefix: str, names: list[str], step: int) -> np.ndarray:
    return np.array([scalars(events, f"{prefix}/mean_abs/{name}")[step] for name in names])


@pytest.mark.parametrize("env", ["FrozenLake-v1", DictObservationEnv])
def test_flattened_observations_are_named_by_the_env_space(ray_cluster, tmp_path, env):
    """FlattenObservations writes one-hot / concatenated rows back into the episodes; the features are
    named by the env's space (one-hot blocks count once, as the active slot) as on the old stack."""
    config = (
        new_ppo_config()
        .environment(env, env_config={"is_slippery": False} if env == "FrozenLake-v1" else {})
        .env_runners(env_to_module_connector=flatten)
        .callbacks(
            SaliencyCallbacks.configure(
                every=1, methods=("gradient",), targets=("action",), logdir=str(tmp_path)
            )
        )
    )
    algo = config.build_algo()
    try:
        result = algo.train()
        assert "errors" not in result["saliency"]
        space = (
            gym.make("FrozenLake-v1").observation_space if env == "FrozenLake-v1" else env().observation_space
        )
        layout = feature_layout(space)
        obs, _ = find_saliency_callbacks(algo).last_explained["default_policy"]
        assert obs.shape[1:] == (gym.spaces.flatdim(space),)
        for part in layout.parts:  # the flat columns follow the env space's components
            block = obs[:, part.start : part.stop]
            if part.kind == "one_hot":
                assert np.all(block.sum(axis=1) == 1)
            else:
                assert np.all(np.abs(block) <= 1) and block.std() > 0.1
        attribution = explain(learner_module(algo), obs, "gradient", "action")
        expected = component_values(attribution.values, obs, layout.parts, absolute=True).mean(axis=0)
        events = load(str(tmp_path), algo)
        logged = logged_by_name(events, "saliency/default_policy/action/gradient", layout.names, 1)
        np.testing.assert_allclose(logged, expected, rtol=1e-4)
    finally:
        algo.stop()


class ScaleObservations(ConnectorV2):
    """A user connector that changes the module input without writing it back into the episode."""

    def __call__(self, *, rl_module, batch, episodes, explore=None, shared_data=None, **kwargs):
        for episode in self.single_agent_episode_iterator(episodes):
            self.add_batch_item(
                batch,
                Columns.OBS,
                np.asarray(episode.get_observations(-1)) * 3.0,
                single_agent_episode=episode,
            )
        return batch


def test_rows_the_module_did_not_see_are_refused(ray_cluster, tmp_path, caplog):
    config = (
        new_ppo_config()
        .env_runners(env_to_module_connector=lambda env, spaces=None, device=None: ScaleObservations())
        .callbacks(
            SaliencyCallbacks.configure(
                every=1, methods=("gradient",), targets=("action",), logdir=str(tmp_path)
            )
        )
    )
    algo = config.build_algo()
    try:
        with caplog.at_level(logging.ERROR, logger="rllib_saliency"):
            results = [algo.train() for _ in range(2)]
        assert results[-1]["saliency"]["errors"] == 1  # reported once, then the module is skipped
        (message,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert "are not what the module saw" in message
        assert not [t for t in load(str(tmp_path)).Tags()["scalars"] if "mean_abs" in t]
        assert np.isfinite(results[-1]["env_runners"]["episode_return_mean"])
    finally:
        algo.stop()


ale_py = pytest.importorskip("ale_py", reason="the atari extra (ale-py) is part of the test install")


def make_pong(config):
    from ray.rllib.env.wrappers.atari_wrappers import wrap_atari_for_new_api_stack

    gym.register_envs(ale_py)
    env = gym.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.0)
    return wrap_atari_for_new_api_stack(env, dim=64, framestack=None)


class StackCheck(RLlibCallback):
    """Checks every frame-stack row the rebuild calls exact against the logits RLlib recorded."""

    def __init__(self):
        super().__init__()
        self.worst = 0.0
        self.rows = 0

    def on_sample_end(self, *, env_runner, samples, **kwargs):
        for episode in samples:
            stacks, exact = stacked_observations(episode, 4)
            recorded = np.asarray(episode.get_extra_model_outputs(key="action_dist_inputs"))[exact]
            with torch.no_grad():
                outputs = env_runner.module.forward_exploration({Columns.OBS: torch.as_tensor(stacks[exact])})
            difference = np.abs(outputs[Columns.ACTION_DIST_INPUTS].numpy() - recorded)
            self.worst = max(self.worst, float(difference.max(initial=0.0)))
            self.rows += int(exact.sum())


def test_pong_with_rllibs_frame_stacking_connector(ray_cluster, tmp_path):
    """RLlib's new-stack Atari set-up: 64x64 frames, stacked by FrameStackingEnvToModule (not in the
    episodes): the maps are over the 4-frame stacks the module saw."""
    from ray import tune
    from ray.rllib.connectors.env_to_module.frame_stacking import FrameStackingEnvToModule
    from ray.rllib.connectors.learner.frame_stacking import FrameStackingLearner

    tune.register_env("pong_new_stack_test", make_pong)
    config = (
        new_ppo_config()
        .environment("pong_new_stack_test")
        .env_runners(
            env_to_module_connector=lambda env, spaces=None, device=None: FrameStackingEnvToModule(
                num_frames=4
            ),
            rollout_fragment_length=64,
        )
        .training(
            learner_connector=lambda *args, **kwargs: FrameStackingLearner(num_frames=4),
            train_batch_size=64,
            minibatch_size=32,
        )
        .callbacks(
            [
                StackCheck,
                SaliencyCallbacks.configure(
                    every=1,
                    methods=("gradient", "occlusion"),
                    targets=("action", "value"),
                    num_samples=4,
                    max_images=2,
                    method_options={"occlusion": {"patch_size": 16}},
                    trust_metrics=(),
                    logdir=str(tmp_path),
                ),
            ]
        )
    )
    algo = config.build_algo()
    try:
        assert algo.get_module().observation_space.shape == (64, 64, 4)
        results = [algo.train() for _ in range(2)]
        assert "errors" not in results[-1]["saliency"]
        check = next(c for c in algo.env_runner._callbacks if isinstance(c, StackCheck))
        assert check.rows >= 100 and check.worst < 1e-4  # rebuilt stacks reproduce the acting logits
        obs, _ = find_saliency_callbacks(algo).last_explained["default_policy"]
        assert obs.shape == (4, 64, 64, 4)
        events = load(str(tmp_path), algo)
        for method, options in (("gradient", {}), ("occlusion", {"patch_size": 16})):
            prefix = f"saliency/default_policy/action/{method}"
            logged = [scalars(events, f"{prefix}/mean_abs/c{k}")[2] for k in range(4)]
            attribution = explain(learner_module(algo), obs, method, "action", **options)
            np.testing.assert_allclose(logged, np.abs(attribution.values).mean(axis=(0, 1, 2)), rtol=1e-3)
            (image,) = events.Images(f"{prefix}/importance")
            assert decode_png(image).std() > 10
    finally:
        algo.stop()
