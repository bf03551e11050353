"""The new stack's module the engine cannot explain (see unsupported_models.py)."""

from __future__ import annotations

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule


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
