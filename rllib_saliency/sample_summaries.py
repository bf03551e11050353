"""Explain one model's sampled observations for the training callback: compact summaries only.

Below the stack packages, which call it; ``settings`` is the callback's
:class:`~rllib_saliency.callbacks.settings.SaliencySettings`, passed in as data.
The same code runs wherever a stack computes: on an old-stack env runner with
its TF policy, or with a new-stack learner's torch RLModule. It never raises:
each failing (target, method) pair comes back as an error record while the
others go on.
"""

from __future__ import annotations

import itertools
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np

from rllib_saliency.engine import explain
from rllib_saliency.errors import ErrorRecord, UnsupportedModel, UnsupportedTarget
from rllib_saliency.summaries import AttributionSummary, feature_layout, summarize
from rllib_saliency.targets import action_targets
from rllib_saliency.trust import deletion_test, randomization_rank_corr, rank_agreement
from rllib_saliency.trust.completeness import completeness_sums


@dataclass(frozen=True)
class Sample:
    """What one model saw: observations, the actions taken, and per-row step inputs (recurrent state)."""

    obs: np.ndarray
    actions: np.ndarray
    states: tuple[np.ndarray, ...] = ()


def mean_sums(values: np.ndarray) -> tuple[float, float]:
    """(sum, count) of the finite values: a mean that merges exactly across workers."""
    finite = np.isfinite(values)
    return float(values[finite].sum()), float(finite.sum())


def targets_for(settings: Any, action_space: Any) -> list[str]:
    """The configured targets, ``"action"`` expanded for Box/MultiDiscrete action spaces."""
    targets = []
    for target in settings.targets:
        targets += action_targets(action_space) if target == "action" else [target]
    return targets


def method_options(settings: Any, method: str) -> dict[str, Any]:
    options = dict(settings.method_options.get(method, {}))
    if method == "smoothgrad":
        options.setdefault("seed", settings.seed)
    return options


def _trust_sums(model: Any, attribution: Any, settings: Any) -> dict[str, tuple[float, float]]:
    """Trust metrics of one attribution as (numerator, denominator) sums, which merge exactly
    across workers."""
    metrics = settings.trust_metrics
    sums: dict[str, tuple[float, float]] = {}
    if "completeness" in metrics and attribution.delta is not None:
        sums["completeness_error"] = completeness_sums(attribution)
    if "deletion" in metrics:
        # Span-weighted, so a sample whose target barely moves barely counts.
        deletion = deletion_test(model, attribution, seed=settings.seed)
        sums["deletion_auc"] = deletion.sums("by_map")
        sums["deletion_auc_random"] = deletion.sums("by_chance")
    if "randomization" in metrics:
        corr = randomization_rank_corr(model, attribution, seed=settings.seed)
        sums["randomization_rank_corr"] = mean_sums(corr)
    return sums


def explain_sample(
    model: Any,
    model_id: str,
    sample: Sample,
    settings: Any,
    rng: np.random.Generator,
    layout_space: Any = None,
) -> tuple[list[AttributionSummary], list[ErrorRecord]]:
    """Every configured (target, method) of one model on its sample, with trust metrics.

    ``layout_space``: the space whose structure names the features, if not the model's own
    (new stack: the env's Dict space that a connector flattened)."""
    summaries: list[AttributionSummary] = []
    errors: list[ErrorRecord] = []
    try:
        targets = targets_for(settings, model.action_space)
        layout = feature_layout(layout_space or model.observation_space)
    except Exception:  # noqa: BLE001 - reported to the driver
        return [], [(f"policy {model_id}", "PolicyError", traceback.format_exc(), 1)]
    for target in targets:
        attributions = {}
        for method in settings.methods:
            try:
                attribution = explain(
                    model,
                    sample.obs,
                    method,
                    target,
                    actions=sample.actions if target == "logp" else None,
                    state=sample.states or None,
                    **method_options(settings, method),
                )
                summary = summarize(attribution, model_id, rng, layout.parts, settings.max_images)
                summary.trust = _trust_sums(model, attribution, settings)
                summaries.append(summary)
                attributions[method] = (attribution, summary)
            except UnsupportedModel as error:  # no target of this model works: one line, once
                errors.append((f"policy {model_id}", type(error).__name__, str(error), 1))
                return summaries, errors
            except UnsupportedTarget as error:  # the other methods of this target would say the same
                errors.append((f"policy {model_id}/{target}", type(error).__name__, str(error), 1))
                break
            except Exception as error:  # noqa: BLE001 - one bad pair must not stop the rest
                errors.append(
                    (f"explain {model_id}/{target}/{method}", type(error).__name__, traceback.format_exc(), 1)
                )
        if "agreement" in settings.trust_metrics:
            for (a, (first, summary)), (b, (second, _)) in itertools.combinations(attributions.items(), 2):
                summary.trust[f"agreement/{a}__{b}"] = mean_sums(rank_agreement(first, second))
    return summaries, errors
