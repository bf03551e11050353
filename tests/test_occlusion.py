"""Occlusion on images: patches, blur, and exact values for a linear function."""

from __future__ import annotations

import numpy as np
from analytic import context_for, polynomial
from scipy.ndimage import gaussian_filter

from rllib_saliency.methods import get_method
from rllib_saliency.methods.occlusion import gaussian_blur


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
