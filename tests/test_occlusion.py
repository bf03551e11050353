"""Occlusion on images: patches, blur, and exact values for a linear function."""

from __future__ import annotations

import numpy as np
import pytest
from analytic import PolynomialBackend, context_for, polynomial
from scipy.ndimage import gaussian_filter

from rllib_saliency.backends.base import TargetFunction
from rllib_saliency.methods import get_method
from rllib_saliency.methods.occlusion import gaussian_blur, gaussian_mask
from rllib_saliency.targets import ResolvedTarget


def test_patch_changes_of_a_linear_function_are_exact():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(4, 4, 2))
    x = rng.normal(size=(3, 4, 4, 2)).astype(np.float32)
    method = get_method("occlusion")
    options = method.check_options({"patch_size": 2, "fill": "baseline", "baseline": "zeros"}, (4, 4, 2))
    result = method.attribute(polynomial(weights, np.zeros_like(weights)), x, context_for(x), **options)
    for top in (0, 2):
        for left in (0, 2):
            patch = (slice(None), slice(top, top + 2), slice(left, left + 2))
            expected = (weights[patch[1:]] * x[patch]).sum(axis=(1, 2, 3))
            for channel in range(2):
                np.testing.assert_allclose(result.values[:, top, left, channel], expected, rtol=1e-5)
                np.testing.assert_allclose(result.values[:, top + 1, left + 1, channel], expected, rtol=1e-5)


def test_overlapping_patches_average_and_cover_the_edges():
    x = np.ones((1, 5, 5, 1), np.float32)
    method = get_method("occlusion")
    options = method.check_options(
        {"patch_size": 2, "stride": 2, "fill": "baseline", "baseline": "zeros"}, (5, 5, 1)
    )
    # f = Σ x: removing a 2x2 patch of ones changes f by 4 wherever the patch lies.
    result = method.attribute(
        polynomial(np.ones((5, 5, 1)), np.zeros((5, 5, 1))), x, context_for(x), **options
    )
    np.testing.assert_allclose(result.values, 4.0)


def test_blur_matches_scipy():
    images = np.random.default_rng(1).normal(size=(2, 12, 10, 3)).astype(np.float32)
    ours = gaussian_blur(images, sigma=2.0)
    reference = gaussian_filter(images, sigma=(0, 2.0, 2.0, 0), mode="nearest", truncate=3.0)
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_vector_observations_occlude_each_feature():
    a = np.array([1.0, 2.0, -3.0])
    x = np.array([[1.0, 1.0, 1.0], [2.0, 0.0, -1.0]], np.float32)
    method = get_method("occlusion")
    options = method.check_options({"baseline": "zeros"}, (3,))
    result = method.attribute(polynomial(a, np.zeros(3)), x, context_for(x), **options)
    np.testing.assert_allclose(result.values, a * x, rtol=1e-6)


def greydanus_mask(center, size, r):
    """visualize_atari's get_mask (Greydanus et al. 2018): a blurred 1-pixel disc, peak 1."""
    y, x = np.ogrid[-center[0] : size[0] - center[0], -center[1] : size[1] - center[1]]
    mask = np.zeros(size)
    mask[x * x + y * y <= 1] = 1
    mask = gaussian_filter(mask, sigma=r)
    return mask / mask.max()


def test_gaussian_mask_is_greydanus_mask_away_from_the_border():
    for center in ((20, 20), (40, 45), (60, 25)):
        np.testing.assert_allclose(
            gaussian_mask(84, 84, *center, 5.0), greydanus_mask(center, (84, 84), 5.0), atol=0.01
        )


def test_gaussian_masks_blur_in_greydanus_perturbations_on_a_17_by_17_grid():
    rng = np.random.default_rng(2)
    weights = rng.normal(size=(84, 84, 2))
    x = rng.uniform(0, 255, size=(2, 84, 84, 2)).astype(np.float32)
    method = get_method("occlusion")
    options = method.check_options({"mask": "gaussian", "stride": 5, "mask_sigma": 5.0}, (84, 84, 2))
    assert options["fill"] == "blur" and options["blur_sigma"] == 3.0
    backend = PolynomialBackend(weights, np.zeros_like(weights))
    result = method.attribute(TargetFunction(backend, ResolvedTarget("value")), x, context_for(x), **options)
    assert backend.calls == 1 + 17 * 17  # the unperturbed batch, then one batch per grid point
    # f is linear: mixing in the blurred image under mask M changes f by Σ w·M·(x − blur);
    # the map is each grid point's change weighted by its mask.
    blurred = gaussian_filter(x, sigma=(0, 3.0, 3.0, 0), mode="nearest", truncate=3.0)
    ys = np.arange(84)
    total, weight = np.zeros((2, 84, 84)), np.zeros((84, 84))
    for i in range(0, 84, 5):
        for j in range(0, 84, 5):
            mask = np.exp(-((ys[:, None] - i) ** 2 + (ys[None, :] - j) ** 2) / (2 * 5.0**2))
            change = (weights * mask[..., None] * (x - blurred)).sum(axis=(1, 2, 3))
            total += change[:, None, None] * mask
            weight += mask
    expected = total / weight
    for channel in range(2):
        np.testing.assert_allclose(result.values[..., channel], expected, atol=1e-3 * np.abs(expected).max())


def test_gaussian_masks_put_the_map_where_the_function_looks():
    weights = np.zeros((40, 40, 1))
    weights[8:12, 28:32] = 1.0  # f only sees a small square near the top right
    x = np.zeros((1, 40, 40, 1), np.float32)
    x[0, 8:12, 28:32] = 1.0
    method = get_method("occlusion")
    options = method.check_options({"mask": "gaussian", "stride": 4, "mask_sigma": 3.0}, (40, 40, 1))
    fn = polynomial(weights, np.zeros_like(weights))
    values = method.attribute(fn, x, context_for(x), **options).values
    peak = np.unravel_index(np.argmax(values[0, ..., 0]), (40, 40))
    assert 6 <= peak[0] <= 13 and 26 <= peak[1] <= 33
    assert values[0, 30:, :10, 0].max() < 0.01 * values.max()


def test_mask_options_are_checked():
    method = get_method("occlusion")
    for bad in ({"mask": "circle"}, {"mask_sigma": 0}, {"mask_sigma": True}):
        with pytest.raises(ValueError, match="mask"):
            method.check_options(bad, (8, 8, 1))
