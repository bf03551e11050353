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
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rllib_saliency.engine import explain
from rllib_saliency.errors import ErrorRecord, UnsupportedModel, UnsupportedTarget
from rllib_saliency.methods import METHODS
from rllib_saliency.summaries import AttributionSummary, feature_layout, summarize
from rllib_saliency.targets import action_targets
from rllib_saliency.trust import deletion_test, randomization_rank_corr, rank_agreement
from rllib_saliency.trust.completeness import completeness_sums
from rllib_saliency.trust.deletion import DEFAULT_STEPS as DELETION_STEPS


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


@dataclass(frozen=True)
class ComputationPlan:
    """How much of the configured work one computation does (``callbacks/schedule.py`` decides).

    The *first part* is the first configured method of every target (with completeness, which
    costs nothing more); the *further parts* are the other methods and the trust metrics that
    run the model again (deletion, randomization; agreement needs two methods).

    ``light``: the first part only. ``allowance``: seconds; each further part runs only if the
    time spent so far plus its estimated cost fits (the estimate: its model passes per row, an
    upper bound, times the seconds per pass the first part measured on the same rows).
    Neither: everything, whatever it costs (an explicit ``every``).
    """

    light: bool = False
    allowance: float | None = None


FULL = ComputationPlan()


@dataclass
class ExplainedSample:
    """What :func:`explain_sample` returns: summaries, errors as data, and the further parts the
    plan left out, each with its estimated seconds."""

    summaries: list[AttributionSummary] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)
    deferred: dict[str, float] = field(default_factory=dict)


def _passes(method: str, settings: Any, obs_shape: tuple[int, ...]) -> int:
    """Model passes per row of ``method`` with the configured options (see ``AttributionMethod.passes``)."""
    chosen = METHODS.get(method)
    try:
        options = chosen.check_options(method_options(settings, method), obs_shape)
        return max(1, int(chosen.passes(options, obs_shape)))
    except Exception:  # noqa: BLE001 - bad options: explain() reports them where it runs the method
        return 1


def _trust_passes(metric: str, method_passes: int, obs_shape: tuple[int, ...]) -> int:
    """Model passes per row of a trust metric of a map: deletion runs two curves (map order and
    random order) of up to ``DELETION_STEPS`` + 1 forward passes; randomization explains again
    on a randomised copy."""
    if metric == "deletion":
        return 2 * (min(DELETION_STEPS, int(np.prod(obs_shape))) + 1)
    return method_passes


def _trust_sums(
    model: Any, attribution: Any, settings: Any, metrics: tuple[str, ...]
) -> dict[str, tuple[float, float]]:
    """Trust metrics ``metrics`` of one attribution as (numerator, denominator) sums, which merge
    exactly across workers."""
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


# Trust metrics that run the model again: further parts of a computation.
COSTLY_TRUST = ("deletion", "randomization")


def has_further_parts(settings: Any) -> bool:
    """Whether the settings ask for more than the first part (see :class:`ComputationPlan`)."""
    return len(settings.methods) > 1 or any(m in COSTLY_TRUST for m in settings.trust_metrics)


def explain_sample(
    model: Any,
    model_id: str,
    sample: Sample,
    settings: Any,
    rng: np.random.Generator,
    layout_space: Any = None,
    plan: ComputationPlan = FULL,
) -> ExplainedSample:
    """Every configured (target, method) of one model on its sample, with trust metrics, as far
    as ``plan`` allows: first the first method of every target, then the further parts (the
    first method's costly trust metrics, then each other method with its own).

    ``layout_space``: the space whose structure names the features, if not the model's own
    (new stack: the env's Dict space that a connector flattened)."""
    out = ExplainedSample()
    started = time.perf_counter()
    try:
        targets = targets_for(settings, model.action_space)
        layout = feature_layout(layout_space or model.observation_space)
    except Exception:  # noqa: BLE001 - reported to the driver
        out.errors.append((f"policy {model_id}", "PolicyError", traceback.format_exc(), 1))
        return out
    obs_shape = tuple(sample.obs.shape[1:])
    first, *others = settings.methods
    costly = tuple(m for m in settings.trust_metrics if m in COSTLY_TRUST)
    cheap = tuple(m for m in settings.trust_metrics if m not in COSTLY_TRUST)
    done: dict[str, dict[str, tuple[Any, AttributionSummary]]] = {target: {} for target in targets}
    passes = {method: _passes(method, settings, obs_shape) for method in settings.methods}
    seconds_per_pass: dict[str, float] = {}

    def explain_pair(target: str, method: str) -> Any:
        return explain(
            model,
            sample.obs,
            method,
            target,
            actions=sample.actions if target == "logp" else None,
            state=sample.states or None,
            **method_options(settings, method),
        )

    rewarmed: set[str] = set()

    def fits(name: str, part_passes: int, target: str) -> bool:
        """Whether a further part may run now; records it as deferred if not."""
        if plan.light:
            out.deferred[name] = 0.0
            return False
        if plan.allowance is None:
            return True
        estimate = part_passes * seconds_per_pass[target]
        if time.perf_counter() - started + estimate > plan.allowance and target not in rewarmed:
            # The first call of a target pays one-off set-up (tracing, graph building): price
            # the pass again, warm, before leaving anything out on its account.
            rewarmed.add(target)
            begun = time.perf_counter()
            try:
                explain_pair(target, first)
                warm = (time.perf_counter() - begun) / passes[first]
                seconds_per_pass[target] = min(seconds_per_pass[target], warm)
            except Exception as error:  # noqa: BLE001 - it worked once; if not now, keep the first price
                out.errors.append(
                    (f"explain {model_id}/{target}/{first}", type(error).__name__, traceback.format_exc(), 1)
                )
            estimate = part_passes * seconds_per_pass[target]
        if time.perf_counter() - started + estimate <= plan.allowance:
            return True
        out.deferred[name] = estimate
        return False

    def run(target: str, method: str) -> str | None:
        """Explain and summarise one pair; returns "model" or "target" when the rest of the model's
        or the target's work would fail the same way."""
        try:
            attribution = explain_pair(target, method)
            summary = summarize(attribution, model_id, rng, layout.parts, settings.max_images)
            summary.trust = _trust_sums(model, attribution, settings, cheap)
            out.summaries.append(summary)
            done[target][method] = (attribution, summary)
        except UnsupportedModel as error:  # no target of this model works: one line, once
            out.errors.append((f"policy {model_id}", type(error).__name__, str(error), 1))
            return "model"
        except UnsupportedTarget as error:  # the other methods of this target would say the same
            out.errors.append((f"policy {model_id}/{target}", type(error).__name__, str(error), 1))
            return "target"
        except Exception as error:  # noqa: BLE001 - one bad pair must not stop the rest
            out.errors.append(
                (f"explain {model_id}/{target}/{method}", type(error).__name__, traceback.format_exc(), 1)
            )
        return None

    def add_costly_trust(target: str, method: str) -> None:
        attribution, summary = done[target][method]
        for metric in costly:
            part_passes = _trust_passes(metric, passes[method], obs_shape)
            if not fits(f"{target}/{method}/{metric}", part_passes, target):
                continue
            try:
                summary.trust.update(_trust_sums(model, attribution, settings, (metric,)))
            except Exception as error:  # noqa: BLE001 - one bad metric must not stop the rest
                out.errors.append(
                    (f"explain {model_id}/{target}/{method}", type(error).__name__, traceback.format_exc(), 1)
                )

    # The first part: every target's first method; its time per pass prices the further parts.
    for target in targets:
        begun = time.perf_counter()
        if run(target, first) == "model":
            return out
        seconds_per_pass[target] = (time.perf_counter() - begun) / passes[first]
    # The further parts, of the targets whose first method worked.
    for target in targets:
        if first not in done[target]:
            continue
        add_costly_trust(target, first)
        for method in others:
            if not fits(f"{target}/{method}", passes[method], target):
                continue
            failure = run(target, method)
            if failure == "model":
                return out
            if failure == "target":
                break
            if method in done[target]:
                add_costly_trust(target, method)
    if "agreement" in settings.trust_metrics:
        for target in targets:
            for (a, (one, summary)), (b, (other, _)) in itertools.combinations(done[target].items(), 2):
                summary.trust[f"agreement/{a}__{b}"] = mean_sums(rank_agreement(one, other))
    return out
