"""SaliencyCallbacks on RLlib's new API stack (torch RLModules): real training, event files read back,
values checked against explain() with the learner's module."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import learner_module, new_ppo_config
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule
from tb_events import load, scalars

from rllib_saliency import SaliencyCallbacks

pytestmark = pytest.mark.slow


def test_same_weights_with_and_without_the_callback(ray_cluster, tmp_path):
    """Explaining reads the learner's module and never changes it, nor the RNG training draws from."""

    def final_weights(callbacks):
        config = new_ppo_config()
        if callbacks is not None:
            config = config.callbacks(callbacks)
        algo = config.build_algo()
        try:
            for _ in range(2):
                algo.train()
            return algo.learner_group.get_weights()["default_policy"]
        finally:
            algo.stop()

    plain = final_weights(None)
    again = final_weights(None)
    # RLlib is deterministic here (0 env runners, one seed): the comparison below means something.
    assert all(np.array_equal(plain[k], again[k]) for k in plain)
    explained = final_weights(
        SaliencyCallbacks.configure(
            every=1,
            methods=("gradient", "smoothgrad", "integrated_gradients", "occlusion"),
            targets=("action", "logp", "value"),
            trust_metrics=("completeness", "deletion", "agreement", "randomization"),
            activation_maximization_every=1,
            activation_maximization_options={"steps": 5, "n_starts": 2},
            logdir=str(tmp_path),
        )
    )
    assert sorted(explained) == sorted(plain)
    for key in plain:
        np.testing.assert_array_equal(explained[key], plain[key], err_msg=key)


class LinearModule(TorchRLModule, ValueFunctionAPI):
    """A user's own TorchRLModule: linear logits and value over the observation."""

    def setup(self):
        size = int(np.prod(self.observation_space.shape))
        self.pi = torch.nn.Linear(size, int(self.action_space.n))
        self.vf = torch.nn.Linear(size, 1)

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.pi(batch[Columns.OBS].float())}

    def compute_values(self, batch, embeddings=None):
        return self.vf(batch[Columns.OBS].float()).squeeze(-1)


def test_a_users_own_torch_rl_module_in_training(ray_cluster, tmp_path):
    """Closed form: the gradient of logit K of a linear module is its weight row K, whatever the input."""
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    config = (
        new_ppo_config()
        .rl_module(rl_module_spec=RLModuleSpec(module_class=LinearModule))
        .callbacks(
            SaliencyCallbacks.configure(
                every=1,
                methods=("gradient",), targets=("action_1", "value"), logdir=str(tmp_path)
            )
        )
    )
    algo = config.build_algo()
    try:
        result = algo.train()
        assert "errors" not in result["saliency"]
        module = learner_module(algo)
        assert isinstance(module, LinearModule)
        events = load(str(tmp_path), algo)
        for target, layer in (("action_1", module.pi), ("value", module.vf)):
            row = layer.weight.detach().numpy()[1 if target == "action_1" else 0]
            logged = [
                scalars(events, f"saliency/default_policy/{target}/gradient/mean_abs/f{j}")[1]
                for j in range(4)
            ]
            np.testing.assert_allclose(logged, np.abs(row), rtol=1e-5)
    finally:
        algo.stop()
