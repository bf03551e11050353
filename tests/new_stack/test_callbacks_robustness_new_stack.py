"""SaliencyCallbacks never breaks new-stack training: unsupported modules, restarts, checkpoints,
composition, Tune."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch
from conftest import new_ppo_config
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule
from tb_events import load, scalars

from rllib_saliency import SaliencyCallbacks

pytestmark = pytest.mark.slow

TAG = "saliency/default_policy/action/gradient/mean_abs/f2"


def saliency_errors(caplog) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "rllib_saliency" and r.levelno >= logging.ERROR
    ]


class DictInputModule(TorchRLModule, ValueFunctionAPI):
    """A user's own module that reads a Dict observation itself (no FlattenObservations connector)."""

    def setup(self):
        self.pi = torch.nn.Linear(5, 2)
        self.vf = torch.nn.Linear(5, 1)

    def _features(self, batch):
        obs = batch[Columns.OBS]
        return torch.cat([obs["pos"], obs["vel"]], dim=-1).float()

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.pi(self._features(batch))}

    def compute_values(self, batch, embeddings=None):
        return self.vf(self._features(batch)).squeeze(-1)


def test_an_unsupported_module_is_reported_once_and_skipped(ray_cluster, tmp_path, caplog):
    from envs import DictObservationEnv
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    config = (
        new_ppo_config()
        .environment(DictObservationEnv)
        .rl_module(rl_module_spec=RLModuleSpec(module_class=DictInputModule))
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
        assert results[-1]["training_iteration"] == 2
        assert np.isfinite(results[-1]["env_runners"]["episode_return_mean"])
        assert results[-1]["saliency"]["errors"] == 1  # reported once, then the module is skipped
        messages = saliency_errors(caplog)
        assert len(messages) == 1 and "FlattenObservations" in messages[0]
    finally:
        algo.stop()


def test_tune_trial_dir_holds_rllib_curves_and_saliency(ray_cluster, tmp_path):
    import csv
    import glob

    from ray import tune
    from ray.rllib.algorithms.ppo import PPO

    config = new_ppo_config().callbacks(
        SaliencyCallbacks.configure(every=1, methods=("gradient",), targets=("action",), image_every=1)
    )
    tuner = tune.Tuner(
        PPO,
        param_space=config,
        run_config=tune.RunConfig(
            name="saliency", storage_path=str(tmp_path), stop={"training_iteration": 2}, verbose=0
        ),
    )
    result = tuner.fit()[0]
    assert result.error is None
    trial_dir = result.path
    ours = glob.glob(os.path.join(trial_dir, "events.out.tfevents.*.saliency"))
    tunes = [f for f in glob.glob(os.path.join(trial_dir, "events.out.tfevents.*")) if f not in ours]
    assert len(ours) == 1 and tunes
    assert sorted(scalars(load(trial_dir), TAG)) == [1, 2]
    with open(os.path.join(trial_dir, "progress.csv")) as file:
        header = next(csv.reader(file))
    assert "saliency/default_policy/action/gradient/mean_abs/f2" in header
    # Tune's own TensorBoard logger skips our scalars (np.longdouble): one copy, under our tags.
    assert not [
        t for t in load(trial_dir).Tags()["scalars"] if t.startswith("ray/tune/saliency/") and "mean_abs" in t
    ]
