"""Integrated Gradients (Sundararajan et al. 2017), by Gauss–Legendre quadrature.

``attr = (x - b) * ∫₀¹ ∇f(b + α(x - b)) dα``. The integral is computed with
``steps``-point Gauss–Legendre quadrature on [0, 1]: exact for polynomial paths
of degree < 2·steps and far more accurate than a Riemann sum of the same cost
on the smooth (tanh/relu-mixed) networks RLlib builds. ``delta`` is the
completeness error per sample: ``sum(attr) - (f(x) - f(b))``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from rllib_saliency.backends.base import TargetFunction
from rllib_saliency.methods.base import (
    BatchContext,
    MethodResult,
    baseline_array,
    check_baseline,
    check_positive_int,
    fill_defaults,
)


class IntegratedGradients:
    name = "integrated_gradients"
    defaults: Mapping[str, Any] = {"baseline": "zeros", "steps": 32}

    def check_options(self, options: Mapping[str, Any], obs_shape: tuple[int, ...]) -> dict[str, Any]:
        checked = fill_defaults(self, options)
        checked["steps"] = check_positive_int("steps", self.name, checked["steps"])
        checked["baseline"] = check_baseline(self.name, checked["baseline"], obs_shape)
        return checked

    def passes(self, options: Mapping[str, Any], obs_shape: tuple[int, ...]) -> int:
        return int(options["steps"])

    def attribute(
        self, fn: TargetFunction, inputs: np.ndarray, context: BatchContext, **options: Any
    ) -> MethodResult:
        baseline_row = np.asarray(baseline_array(options["baseline"], context), np.float32)
        nodes, weights = np.polynomial.legendre.leggauss(options["steps"])
        alphas, weights = (nodes + 1.0) / 2.0, weights / 2.0  # map [-1, 1] to [0, 1]
        f_inputs = fn.value(inputs)  # first: a backend that kept the greedy action's pass reuses it
        batched = fn.integrated_gradients(inputs, baseline_row, alphas, weights)
        if batched is not None:  # all steps in few passes, built where the model runs
            values, f_baseline = batched
        else:
            baseline = np.broadcast_to(baseline_row, inputs.shape)
            difference = inputs - baseline
            integral = np.zeros(inputs.shape, np.float64)
            for alpha, weight in zip(alphas, weights, strict=True):
                _, gradient = fn.value_and_gradient((baseline + alpha * difference).astype(np.float32))
                integral += weight * gradient
            values = (difference * integral).astype(np.float32)
            f_baseline = fn.value(np.ascontiguousarray(baseline, dtype=np.float32))
        sum_axes = tuple(range(1, inputs.ndim))
        delta = values.sum(axis=sum_axes, dtype=np.float64) - (f_inputs.astype(np.float64) - f_baseline)
        return MethodResult(values, delta.astype(np.float32))
