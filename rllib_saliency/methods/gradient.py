"""Vanilla saliency (Simonyan et al. 2014): the gradient of the target w.r.t. the observation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from rllib_saliency.backends.base import TargetFunction
from rllib_saliency.methods.base import BatchContext, MethodResult, fill_defaults


class Gradient:
    name = "gradient"
    defaults: Mapping[str, Any] = {}

    def check_options(self, options: Mapping[str, Any], obs_shape: tuple[int, ...]) -> dict[str, Any]:
        return fill_defaults(self, options)

    def passes(self, options: Mapping[str, Any], obs_shape: tuple[int, ...]) -> int:
        return 1

    def attribute(
        self, fn: TargetFunction, inputs: np.ndarray, context: BatchContext, **options: Any
    ) -> MethodResult:
        _, gradient = fn.value_and_gradient(inputs)
        return MethodResult(gradient)
