"""Closed-form target functions for testing methods exactly (no model, no framework).

They implement the same Backend interface as the TF backends, so the methods
run unchanged on functions whose attributions are known in closed form.
"""

from __future__ import annotations

import numpy as np

from rllib_saliency.backends.base import ModelOutputs, TargetFunction
from rllib_saliency.methods import BatchContext
from rllib_saliency.targets import ResolvedTarget


def central_differences(f, x: np.ndarray, eps: float = 1e-6, dtype=np.float64) -> np.ndarray:
    """Central differences of a per-row scalar ``f(z) -> (N,)`` w.r.t. each feature of ``x``
    ``(N, D)``, cast to ``dtype`` first (float64 for a float64 copy of a model; float32 for what
    a model runs in)."""
    x = np.asarray(x, dtype=dtype)  # (no copy of an array already in dtype: f never writes to it)
    numeric = np.zeros_like(x)
    for j in range(x.shape[1]):
        step = np.zeros_like(x)
        step[:, j] = eps
        numeric[:, j] = (f(x + step) - f(x - step)) / (2 * eps)
    return numeric


class PolynomialBackend:
    """f(x) = Σ_j a_j x_j + b_j x_j²  (per sample), gradient a + 2 b x."""

    def __init__(self, a: np.ndarray, b: np.ndarray) -> None:
        self.a, self.b = a.astype(np.float64), b.astype(np.float64)
        self.calls = 0

    def sync_weights(self) -> None:
        pass

    def forward(self, obs: np.ndarray) -> ModelOutputs:
        raise NotImplementedError

    def evaluate(self, obs, target: ResolvedTarget, with_gradient: bool):
        self.calls += 1
        x = obs.astype(np.float64)
        axes = tuple(range(1, x.ndim))
        values = (self.a * x + self.b * x * x).sum(axis=axes)
        gradient = (self.a + 2 * self.b * x).astype(np.float32) if with_gradient else None
        return values.astype(np.float32), gradient


def polynomial(a: np.ndarray, b: np.ndarray) -> TargetFunction:
    return TargetFunction(PolynomialBackend(a, b), ResolvedTarget("value"))


def context_for(obs: np.ndarray, seed: int = 0) -> BatchContext:
    return BatchContext(obs, seed)
