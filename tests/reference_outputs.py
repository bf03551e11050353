"""A model's own outputs through RLlib, not through rllib_saliency's backends: the reference the
engine contracts (tests/contracts/test_engine_contracts.py) compare explain() against.

One small adapter per stack, picked by ``outputs_of(model)`` from conftest.STACK: on the old stack
an RLlib TF policy (``compute_actions``, ``compute_log_likelihoods``), on the new stack a torch
RLModule (``forward_inference``, ``compute_values``, the module's distribution classes). Each imports
only its own stack's framework (torch only on the new stack), so a torch process never imports
TensorFlow first.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from analytic import central_differences
from conftest import STACK


class OldStackOutputs:
    """An old-stack TF policy (graph or eager), asked through its own RLlib methods."""

    def __init__(self, policy) -> None:
        self.model = policy
        self.action_space = policy.action_space

    def _extra(self, x: np.ndarray) -> dict:
        return self.model.compute_actions(x, explore=False)[2]

    def dist_inputs(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._extra(x)["action_dist_inputs"])

    def value(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._extra(x)["vf_preds"])

    def logp(self, x: np.ndarray, actions: np.ndarray) -> np.ndarray:
        # (with explore=False RLlib reports action_logp=0, so ask the policy's own likelihoods)
        return np.asarray(self.model.compute_log_likelihoods(actions, x))

    def greedy(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.compute_actions(x, explore=False)[0])


class NewStackOutputs:
    """A new-stack torch RLModule (float32, or a float64 copy), asked through its own RLlib API."""

    def __init__(self, module) -> None:
        self.model = module
        self.action_space = module.action_space

    def _tensor(self, x: np.ndarray):
        import torch

        return torch.as_tensor(np.ascontiguousarray(x), dtype=next(self.model.parameters()).dtype)

    def dist_inputs(self, x: np.ndarray) -> np.ndarray:
        from ray.rllib.core.columns import Columns

        out = self.model.forward_inference({Columns.OBS: self._tensor(x)})
        return out[Columns.ACTION_DIST_INPUTS].detach().numpy().astype(np.float64)

    def value(self, x: np.ndarray) -> np.ndarray:
        import torch
        from ray.rllib.core.columns import Columns

        with torch.no_grad():
            return self.model.compute_values({Columns.OBS: self._tensor(x)}).numpy().astype(np.float64)

    def logp(self, x: np.ndarray, actions: np.ndarray) -> np.ndarray:
        import torch

        dist = self.model.get_exploration_action_dist_cls().from_logits(self._tensor(self.dist_inputs(x)))
        return dist.logp(torch.as_tensor(actions)).detach().numpy().astype(np.float64)

    def greedy(self, x: np.ndarray) -> np.ndarray:
        import torch

        dist = self.model.get_inference_action_dist_cls().from_logits(torch.as_tensor(self.dist_inputs(x)))
        return dist.to_deterministic().sample().numpy().astype(self.action_space.dtype)


def outputs_of(model) -> OldStackOutputs | NewStackOutputs:
    """The reference outputs of ``model`` (``current_model(algo, ...)`` or a copy) on this stack."""
    return NewStackOutputs(model) if STACK.name == "new" else OldStackOutputs(model)


def reference_target(
    outputs, x: np.ndarray, target: str, x0: np.ndarray, actions: np.ndarray | None = None
) -> np.ndarray:
    """The target at ``x`` through the model itself; per-sample choices (the greedy action, its
    column) fixed at ``x0``, or the given ``actions`` for logp."""
    if target == "value":
        return outputs.value(x)
    if target == "logp":
        return outputs.logp(x, outputs.greedy(x0) if actions is None else actions)
    if target == "action":
        discrete = isinstance(outputs.action_space, gym.spaces.Discrete)
        column = np.argmax(outputs.dist_inputs(x0), axis=1) if discrete else np.zeros(len(x), int)
    else:
        column = np.full(len(x), int(target.split("_")[1]))
    return outputs.dist_inputs(x)[np.arange(len(x)), column]


def finite_differences(
    outputs, obs: np.ndarray, target: str, eps: float, dtype=np.float32, actions: np.ndarray | None = None
) -> np.ndarray:
    """Central finite differences of the target through the model itself, at ``obs`` cast to
    ``dtype`` (float32: what the model runs in; float64: for a float64 copy)."""
    return central_differences(lambda x: reference_target(outputs, x, target, obs, actions), obs, eps, dtype)


def check_action_follows_the_greedy_action(model: Any, obs: np.ndarray, logits: np.ndarray) -> None:
    """Target "action" on a Discrete model: the greedy action's logit (the largest in each row,
    ``logits`` being the model's own), and in each row the gradient of that action's column."""
    from rllib_saliency import explain

    greedy = np.argmax(logits, axis=1)
    action = explain(model, obs, "gradient", "action")
    np.testing.assert_array_equal(action.resolved.columns, greedy)
    np.testing.assert_allclose(action.target_values, logits.max(axis=1), rtol=1e-6, atol=1e-6)
    for k in range(logits.shape[1]):
        column = explain(model, obs, "gradient", f"action_{k}").values
        np.testing.assert_array_equal(action.values[greedy == k], column[greedy == k])
