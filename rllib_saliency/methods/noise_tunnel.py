"""Noise tunnel: average any method over noisy copies of the input.

With :class:`~rllib_saliency.methods.gradient.Gradient` inside it is SmoothGrad
(Smilkov et al. 2017). Noise is Gaussian with a per-feature standard deviation
of ``noise_level`` times that feature's range (max - min) over the batch, so
features on different scales get comparable noise. Draws come from the batch
context's generator, seeded by ``seed``: results reproduce for the same
inputs, seed and ``batch_size``.

``noise_source``: ``"host"`` (default) draws the noise with numpy, the same numbers on every
backend and device; ``"device"`` lets a backend that can (torch) draw it with its own generator
where the model runs, seeded from the same ``(seed, block)`` pairs: reproducible for the same
seed and device, not the same numbers as ``"host"``, and it never crosses from the host (a
GPU's SmoothGrad spent ~99 % of its time drawing numpy noise; README, issue 20).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from rllib_saliency.backends.base import TargetFunction
from rllib_saliency.methods.base import (
    AttributionMethod,
    BatchContext,
    MethodResult,
    check_positive_int,
    fill_defaults,
)
from rllib_saliency.methods.gradient import Gradient

NOISE_SOURCES = ("host", "device")


class NoiseTunnel:
    def __init__(self, inner: AttributionMethod, name: str) -> None:
        self.inner = inner
        self.name = name
        self.defaults: Mapping[str, Any] = {
            "n_samples": 25,
            "noise_level": 0.15,
            "seed": 0,
            "noise_source": "host",
            **inner.defaults,
        }

    def check_options(self, options: Mapping[str, Any], obs_shape: tuple[int, ...]) -> dict[str, Any]:
        checked = fill_defaults(self, options)
        checked["n_samples"] = check_positive_int("n_samples", self.name, checked["n_samples"])
        level = checked["noise_level"]
        if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 <= level < np.inf:
            raise ValueError(
                f"method {self.name!r}: option 'noise_level' must be a finite number >= 0 "
                f"(a fraction of each feature's range, e.g. 0.15); got {level!r}."
            )
        if checked["noise_source"] not in NOISE_SOURCES:
            raise ValueError(
                f"method {self.name!r}: option 'noise_source' must be one of {NOISE_SOURCES} ('host': "
                "numpy, the same numbers everywhere; 'device': drawn where a torch module runs); "
                f"got {checked['noise_source']!r}."
            )
        inner_options = {k: checked[k] for k in self.inner.defaults}
        checked.update(self.inner.check_options(inner_options, obs_shape))
        return checked

    def passes(self, options: Mapping[str, Any], obs_shape: tuple[int, ...]) -> int:
        return int(options["n_samples"]) * self.inner.passes(options, obs_shape)

    def attribute(
        self, fn: TargetFunction, inputs: np.ndarray, context: BatchContext, **options: Any
    ) -> MethodResult:
        inner_options = {k: options[k] for k in self.inner.defaults}
        sigma = (options["noise_level"] * (context.feature_max - context.feature_min)).astype(np.float32)
        if isinstance(self.inner, Gradient):  # SmoothGrad: batched where the backend can
            if options["noise_source"] == "device":
                draw: Any = context.generator_seeds(len(inputs))
            else:
                draw = lambda: context.standard_normal(inputs.shape)  # noqa: E731
            batched = fn.smoothgrad(inputs, sigma, draw, options["n_samples"])
            if batched is not None:
                return MethodResult(batched)
            if options["noise_source"] == "device":
                raise ValueError(
                    f"method {self.name!r}: noise_source='device' needs a backend that draws noise "
                    "where the model runs (torch RLModules); TF policies draw it on the host: "
                    "use noise_source='host' (the default)."
                )
        total = np.zeros(inputs.shape, np.float64)
        for _ in range(options["n_samples"]):
            noise = context.standard_normal(inputs.shape).astype(np.float32) * sigma
            total += self.inner.attribute(fn, inputs + noise, context, **inner_options).values
        return MethodResult((total / options["n_samples"]).astype(np.float32))
