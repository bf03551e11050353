"""Occlusion: the change of the target when part of the observation is removed.

No gradients: ``attr = f(x) - f(x with part removed)``, so a positive value
means that part supports the target.

- Vector (and other non-image) observations: each element in turn is set to
  the baseline (default ``"mean"``: the batch mean, i.e. "a typical value").
- Image observations (``(H, W, C)``): parts are replaced, in all channels, by a
  Gaussian-blurred copy of the image (``fill="blur"``, sigma ``blur_sigma``, as
  Greydanus et al. 2018 do) or by the baseline (``fill="baseline"``).
  ``mask="square"`` (default): square patches of ``patch_size`` moved by
  ``stride``, replaced outright; each pixel gets the mean change over the patches
  that cover it. ``mask="gaussian"``: Greydanus' perturbation, a Gaussian mask of
  sigma ``mask_sigma`` (peak 1) centred at each point of the grid
  ``range(0, H, stride) × range(0, W, stride)`` mixes the filler in,
  ``x' = x·(1 − M) + fill·M`` (``patch_size`` is not used); each pixel gets the
  changes of the grid points weighted by their masks at that pixel,
  ``Σ_k M_k·Δ_k / Σ_k M_k``. ``fill="blur", mask="gaussian", stride=5,
  mask_sigma=5`` is their setting (a 17×17 grid on 84×84 frames).
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
MASKS = ("square", "gaussian")


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


def gaussian_mask(height: int, width: int, row: int, col: int, sigma: float) -> np.ndarray:
    """``exp(-((y - row)² + (x - col)²) / 2σ²)``, peak 1 at ``(row, col)``: the mask Greydanus et al.
    build by blurring a one-pixel disc and dividing by its maximum (the same away from the border,
    where their ``gaussian_filter`` reflects the mask back in)."""
    rows = np.exp(-0.5 * ((np.arange(height) - row) / sigma) ** 2)
    cols = np.exp(-0.5 * ((np.arange(width) - col) / sigma) ** 2)
    return np.outer(rows, cols)


class Occlusion:
    name = "occlusion"
    defaults: Mapping[str, Any] = {
        "baseline": "mean",
        "patch_size": None,
        "stride": None,
        "fill": "blur",
        "blur_sigma": 3.0,
        "mask": "square",
        "mask_sigma": 5.0,
    }

    def check_options(self, options: Mapping[str, Any], obs_shape: tuple[int, ...]) -> dict[str, Any]:
        checked = fill_defaults(self, options)
        checked["baseline"] = check_baseline(self.name, checked["baseline"], obs_shape)
        if checked["fill"] not in FILLS:
            raise ValueError(
                f"method 'occlusion': option 'fill' must be one of {FILLS}; got {checked['fill']!r}."
            )
        if checked["mask"] not in MASKS:
            raise ValueError(
                f"method 'occlusion': option 'mask' must be one of {MASKS}; got {checked['mask']!r}."
            )
        if len(obs_shape) == 3:
            default_patch = max(1, round(min(obs_shape[:2]) / 10))
            patch = checked["patch_size"] or default_patch
            checked["patch_size"] = check_positive_int("patch_size", self.name, patch)
            checked["stride"] = check_positive_int(
                "stride", self.name, checked["stride"] or checked["patch_size"]
            )
        for name in ("blur_sigma", "mask_sigma"):
            sigma = checked[name]
            if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 < sigma < np.inf:
                raise ValueError(f"method 'occlusion': option {name!r} must be a number > 0; got {sigma!r}.")
        return checked

    def passes(self, options: Mapping[str, Any], obs_shape: tuple[int, ...]) -> int:
        """One pass for the unoccluded rows plus one per occluded feature, or per patch position
        of an image (its edge positions included)."""
        if len(obs_shape) != 3:
            return 1 + int(np.prod(obs_shape))
        stride = options["stride"]
        if options["mask"] == "gaussian":
            positions = -(-obs_shape[0] // stride) * -(-obs_shape[1] // stride)
        else:
            size = options["patch_size"]
            rows, cols = (max(side - size, 0) // stride + 2 for side in obs_shape[:2])
            positions = rows * cols
        return 1 + positions

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
        if options["mask"] == "gaussian":
            return self._gaussian_masks(fn, inputs, f_inputs, filler, options)
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

    def _gaussian_masks(
        self,
        fn: TargetFunction,
        inputs: np.ndarray,
        f_inputs: np.ndarray,
        filler: np.ndarray,
        options: Mapping[str, Any],
    ) -> np.ndarray:
        height, width = inputs.shape[1:3]
        stride, sigma = options["stride"], float(options["mask_sigma"])
        difference = (filler - inputs).astype(np.float32)
        total = np.zeros(inputs.shape[:3], np.float64)
        weight = np.zeros(inputs.shape[1:3], np.float64)
        for top in range(0, height, stride):
            for left in range(0, width, stride):
                mask = gaussian_mask(height, width, top, left, sigma)
                occluded = inputs + mask[None, :, :, None].astype(np.float32) * difference
                change = f_inputs - fn.value(occluded)
                total += change[:, None, None] * mask
                weight += mask
        per_pixel = (total / weight).astype(np.float32)
        return np.repeat(per_pixel[..., None], inputs.shape[3], axis=3)
