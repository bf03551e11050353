"""Occlusion: the change of the target when part of the observation is removed.

No gradients: ``attr = f(x) - f(x with part removed)``, so a positive value
means that part supports the target.

- Vector (and other non-image) observations: each element in turn is set to
  the baseline (default ``"mean"``: the batch mean, i.e. "a typical value").
- Image observations (``(H, W, C)``): square patches of ``patch_size`` moved by
  ``stride`` are replaced, in all channels, by a Gaussian-blurred copy of the
  image (``fill="blur"``, as Greydanus et al. 2018 do, with a hard patch instead
  of their Gaussian mask) or by the baseline (``fill="baseline"``). Each pixel
  gets the mean change over the patches that cover it.
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

FILLS = ("blur", "baseline")


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur over the two spatial axes of ``(N, H, W, C)`` images."""
    radius = max(1, int(round(3 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    blurred = images.astype(np.float32)
    for axis in (1, 2):
        padded = np.pad(blurred, [(radius, radius) if a == axis else (0, 0) for a in range(4)], mode="edge")
        length = blurred.shape[axis]
        blurred = sum(
            w * np.take(padded, np.arange(i, i + length), axis=axis) for i, w in enumerate(kernel)
        ).astype(np.float32)
    return blurred


class Occlusion:
    name = "occlusion"
    defaults: Mapping[str, Any] = {
        "baseline": "mean",
        "patch_size": None,
        "stride": None,
        "fill": "blur",
        "blur_sigma": 3.0,
    }

    def check_options(self, options: Mapping[str, Any], obs_shape: tuple[int, ...]) -> dict[str, Any]:
        checked = fill_defaults(self, options)
        checked["baseline"] = check_baseline(self.name, checked["baseline"], obs_shape)
        if checked["fill"] not in FILLS:
            raise ValueError(
                f"method 'occlusion': option 'fill' must be one of {FILLS}; got {checked['fill']!r}."
            )
        if len(obs_shape) == 3:
            default_patch = max(1, round(min(obs_shape[:2]) / 10))
            patch = checked["patch_size"] or default_patch
            checked["patch_size"] = check_positive_int("patch_size", self.name, patch)
            checked["stride"] = check_positive_int(
                "stride", self.name, checked["stride"] or checked["patch_size"]
            )
        sigma = checked["blur_sigma"]
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 < sigma < np.inf:
            raise ValueError(f"method 'occlusion': option 'blur_sigma' must be a number > 0; got {sigma!r}.")
        return checked

    def attribute(
        self, fn: TargetFunction, inputs: np.ndarray, context: BatchContext, **options: Any
    ) -> MethodResult:
        f_inputs = fn.value(inputs)
        if inputs.ndim == 4:
            return MethodResult(self._patches(fn, inputs, f_inputs, context, options))
        baseline = baseline_array(options["baseline"], context)
        values = np.zeros(inputs.shape, np.float32)
        flat_inputs = inputs.reshape(len(inputs), -1)
        flat_values = values.reshape(len(inputs), -1)
        flat_baseline = baseline.reshape(-1)
        for j in range(flat_inputs.shape[1]):
            occluded = flat_inputs.copy()
            occluded[:, j] = flat_baseline[j]
            flat_values[:, j] = f_inputs - fn.value(occluded.reshape(inputs.shape))
        return MethodResult(values)

    def _patches(
        self,
        fn: TargetFunction,
        inputs: np.ndarray,
        f_inputs: np.ndarray,
        context: BatchContext,
        options: Mapping[str, Any],
    ) -> np.ndarray:
        if options["fill"] == "blur":
            filler = gaussian_blur(inputs, options["blur_sigma"])
        else:
            filler = np.broadcast_to(baseline_array(options["baseline"], context), inputs.shape)
        height, width = inputs.shape[1:3]
        size, stride = options["patch_size"], options["stride"]
        total = np.zeros(inputs.shape[:3], np.float64)
        count = np.zeros(inputs.shape[1:3], np.float64)
        rows = list(range(0, max(height - size, 0) + 1, stride))
        cols = list(range(0, max(width - size, 0) + 1, stride))
        # Cover the bottom/right edge when the stride does not land on it.
        if rows[-1] + size < height:
            rows.append(height - size)
        if cols[-1] + size < width:
            cols.append(width - size)
        for top in rows:
            for left in cols:
                window = (slice(None), slice(top, top + size), slice(left, left + size))
                occluded = inputs.copy()
                occluded[window] = filler[window]
                total[window] += (f_inputs - fn.value(occluded))[:, None, None]
                count[window[1:]] += 1
        per_pixel = (total / np.maximum(count, 1)).astype(np.float32)
        return np.repeat(per_pixel[..., None], inputs.shape[3], axis=3)
