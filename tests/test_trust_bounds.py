"""Every trust number stays inside its documented range, on crafted inputs and in real training.

Crafted inputs are the ones that broke the old definitions: samples whose target barely
moves between "intact" and "everything removed" (tiny but nonzero spans), curves that
overshoot on the way, Integrated Gradients errors on samples that barely change, constant
or NaN maps for the rank metrics.
"""

from __future__ import annotations

import numpy as np
import pytest
from analytic import PolynomialBackend
from conftest import rollout_observations

from rllib_saliency.callbacks.settings import SaliencySettings
from rllib_saliency.engine import Attribution
from rllib_saliency.methods import METHODS
from rllib_saliency.sample_summaries import Sample, explain_sample
from rllib_saliency.summaries import merge
from rllib_saliency.targets import ResolvedTarget
from rllib_saliency.trust import (
    completeness_error,
    deletion_auc,
    deletion_test,
    per_sample_rank_corr,
)
from rllib_saliency.trust.completeness import completeness_sums


def analytic_attribution(values: np.ndarray, obs: np.ndarray, delta: np.ndarray | None = None) -> Attribution:
    """An Attribution of the ``value`` target as explain() returns it (every row finite)."""
    obs = np.asarray(obs, np.float32)
    values = np.asarray(values, np.float32)
    return Attribution(
        values,
        np.zeros(len(obs), np.float32),
        "gradient_x_input" if delta is None else "integrated_gradients",
        "value",
        obs,
        delta,
        resolved=ResolvedTarget("value"),
        finite=np.ones(len(obs), bool),
    )


def _in_unit_interval_or_nan(values: np.ndarray) -> bool:
    finite = values[~np.isnan(values)]
    return bool(np.all((finite >= 0.0) & (finite <= 1.0)))


# f(x) = x0 - x1 + 2 x2 - 2 x3 (+ 0.5 x4²): pairs that cancel make spans as small as wanted
# while removing one side of a pair moves the target far, both ways.
WEIGHTS = np.array([1.0, -1.0, 2.0, -2.0, 0.0])
SQUARES = np.array([0.0, 0.0, 0.0, 0.0, 0.5])
CRAFTED = np.array(
    [
        [1.0, 1.0 - 1e-4, 0.0, 0.0, 0.0],  # span 1e-4, excursions of ±1: ratios of ±1e4
        [0.0, 0.0, 1.0, 1.0 - 2e-5, 0.0],  # span 4e-5
        [3.0, 0.0, 0.0, 1.0, 0.0],  # span 1, overshoots to 3 and to -2 on the way
        [1.0, 2.0, 0.0, 0.0, 2.0],  # span 1, rises to 3 when x1 goes first (quadratic x4)
        [0.0, 0.0, 0.0, 0.0, 0.0],  # does not move at all
        [0.5, 0.5, 0.25, 0.25, 0.0],  # moves by 0 exactly although every feature matters
    ],
    np.float32,
)


def test_deletion_auc_is_bounded_on_tiny_spans_and_overshooting_curves():
    backend = PolynomialBackend(WEIGHTS, SQUARES)
    contribution = WEIGHTS * CRAFTED + SQUARES * CRAFTED**2  # gradient × input's exact split
    maps = {
        "gradient_x_input": contribution,
        "backwards": -contribution,
        "constant": np.ones_like(CRAFTED),
        "random": np.random.default_rng(0).normal(size=CRAFTED.shape),
    }
    for name, values in maps.items():
        for seed in range(3):
            by_map, by_chance = deletion_auc(
                None, analytic_attribution(values, CRAFTED), seed=seed, backend=backend
            )
            assert _in_unit_interval_or_nan(by_map) and _in_unit_interval_or_nan(by_chance), (name, by_map)
            # Exactly the samples whose target does not move are NaN.
            np.testing.assert_array_equal(np.isnan(by_map), [False, False, False, False, True, True])
            np.testing.assert_array_equal(np.isnan(by_chance), np.isnan(by_map))
    # The exact contribution split is the best order even on the tiny spans: the first
    # step removes the side of the pair that carries the change.
    result = deletion_test(None, analytic_attribution(contribution, CRAFTED), steps=5, backend=backend)
    assert result.by_map[0] == pytest.approx(0.1) and result.by_map[1] == pytest.approx(0.1)


def test_batch_deletion_score_weights_samples_by_span():
    backend = PolynomialBackend(WEIGHTS, SQUARES)
    # One sample with a unit span, removed in the best order (AUC 0.1 with 5 steps);
    # beside it a sample whose target barely moves, removed backwards (AUC near 1).
    obs = np.array([[1.0, 0.0, 0.0, 0.0, 0.0], CRAFTED[0]], np.float32)
    values = np.array([[1.0, 0.0, 0.0, 0.0, 0.0], -(WEIGHTS * CRAFTED[0])], np.float32)
    result = deletion_test(None, analytic_attribution(values, obs), steps=5, backend=backend)
    np.testing.assert_allclose(result.span, [1.0, 1e-4], rtol=1e-2)
    assert result.by_map[1] > 0.8  # on its own, the tiny sample is a bad one ...
    assert result.score() == pytest.approx(0.1, abs=1e-3)  # ... but it weighs 1e-4 of the batch
    numerator, denominator = result.sums()
    assert numerator / denominator == pytest.approx(result.score())
    assert 0.0 <= result.score("by_chance") <= 1.0
    # No sample moves: nothing to report.
    still = deletion_test(None, analytic_attribution(values, np.zeros_like(obs)), steps=5, backend=backend)
    assert np.isnan(still.score()) and still.sums() == (0.0, 0.0)


class CubicMinusLinear(PolynomialBackend):
    """f(x) = x0³ − x1: Gauss–Legendre with one node errs on the cube, not on the line."""

    def __init__(self) -> None:
        super().__init__(np.zeros(2), np.zeros(2))

    def evaluate(self, obs, target, with_gradient):
        x = obs.astype(np.float64)
        values = x[:, 0] ** 3 - x[:, 1]
        gradient = np.stack([3 * x[:, 0] ** 2, -np.ones(len(x))], axis=1).astype(np.float32)
        return values.astype(np.float32), gradient if with_gradient else None


def test_completeness_error_is_bounded_when_the_target_barely_moves():
    from analytic import context_for

    from rllib_saliency.backends.base import TargetFunction

    # f(x) − f(0) is 1e-3 or less while one-node IG is off by 0.25 x0³.
    x = np.array([[1.0, 1.0 - 1e-3], [1.0, 1.0 - 1e-4], [0.5, 0.125 - 1e-4]], np.float32)
    method = METHODS["integrated_gradients"]
    fn = TargetFunction(CubicMinusLinear(), ResolvedTarget("value"))
    options = method.check_options({"steps": 1}, (2,))
    result = method.attribute(fn, x, context_for(x), **options)
    attribution = analytic_attribution(result.values, x, result.delta)
    error = completeness_error(attribution)
    assert np.isfinite(error) and 0.0 <= error <= 2.0  # the old definition gave ~440
    assert error > 1.0  # still a loud warning: the attributions do not add up at all
    # NaN rows and rows with nothing on either side change nothing; all-zero gives NaN.
    nan_row = analytic_attribution(
        np.vstack([result.values, [[np.nan, 0.0]], [[0.0, 0.0]]]),
        np.vstack([x, [[0.0, 0.0]], [[0.0, 0.0]]]),
        np.concatenate([result.delta, [np.nan, 0.0]]).astype(np.float32),
    )
    assert completeness_error(nan_row) == pytest.approx(error)
    zeros = analytic_attribution(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros(2, np.float32))
    assert np.isnan(completeness_error(zeros)) and completeness_sums(zeros) == (0.0, 0.0)


def test_completeness_error_keeps_its_scale_for_small_errors():
    # Σ attributions 1.01 against a change of 1: about 1 %, as before.
    x = np.ones((4, 2), np.float32)
    values = np.full((4, 2), 0.505, np.float32)
    attribution = analytic_attribution(values, x, np.full(4, 0.01, np.float32))
    assert completeness_error(attribution) == pytest.approx(0.01, rel=0.01)


def test_rank_correlation_edge_cases_stay_in_range_or_are_nan():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 5))
    b = a.copy()
    b[0] = 1.0  # constant map
    b[1, 2] = np.nan  # a NaN in one map
    a[2] = 0.0  # all zeros: every feature tied
    b[3] = np.round(a[3], 0)  # many ties
    b[4] = a[4] * 1e-30  # tiny but same ranks
    b[5, 0] = np.inf  # ±inf rank as the largest |attribution|
    corr = per_sample_rank_corr(a, b)
    np.testing.assert_array_equal(np.isnan(corr), [True, True, True, False, False, False])
    assert np.all(np.abs(corr[3:]) <= 1.0) and corr[4] == 1.0
    single = per_sample_rank_corr(a[:, :1], b[:, :1])  # one feature: nothing to rank
    assert np.isnan(single).all()
    signed = per_sample_rank_corr(a, -a, absolute=False)
    assert np.all(signed[~np.isnan(signed)] == -1.0)
    with pytest.raises(ValueError, match="same shape"):
        per_sample_rank_corr(a, b[:, :3])


def test_logged_trust_scalars_stay_in_range_on_a_trained_policy(trained):
    """The callback's own path (explain_sample → merge), on real observations of a trained
    policy and on the same observations shrunk towards the baseline (tiny spans)."""
    algo = trained("CartPole-v1")
    policy = algo.get_policy()
    obs = rollout_observations(algo, n=64)
    settings = SaliencySettings(
        methods=("gradient", "integrated_gradients", "gradient_x_input"),
        targets=("action", "value"),
        trust_metrics=("completeness", "deletion", "agreement"),
    )
    rng = np.random.default_rng(0)
    for scale in (1.0, 1e-3):
        sample = Sample(obs * scale, np.zeros(len(obs), np.int64))
        explained = explain_sample(policy, "default_policy", sample, settings, rng)
        summaries, errors = explained.summaries, explained.errors
        assert not errors
        logged = {(s.key, name): value for s in merge(summaries) for name, value in s.trust.items()}
        assert any(name == "deletion_auc" for _, name in logged)
        for (key, name), value in logged.items():
            low, high = {"completeness_error": (0.0, 2.0)}.get(
                name, (-1.0, 1.0) if name.startswith("agreement/") else (0.0, 1.0)
            )
            assert low <= value <= high, (key, name, value)
        # Real observations: the map's order beats chance on the value's gradient × input.
        if scale == 1.0:
            key = ("default_policy", "value", "gradient_x_input")
            assert logged[(key, "deletion_auc")] < logged[(key, "deletion_auc_random")]
