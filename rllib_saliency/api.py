"""The public functions that take an RLlib ``Algorithm`` as well as a model.

``explain(algo, obs, ...)`` explains the model that holds the asked target with the
learner's current weights, wherever the learner lives (the stack package finds it:
:func:`rllib_saliency.stacks.new.learner_module`, or the old stack's policy), then calls
the engine. Given a model, these functions are the engine's, plus one guard: a value target
asked of a new-stack env runner's copy of a module (``algo.get_module()``), whose value head
RLlib does not keep current, is refused (the stack package decides: ``stacks.check_model``).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rllib_saliency import engine
from rllib_saliency.activation import ActivationMaximization
from rllib_saliency.activation import maximize_activation as _maximize_activation
from rllib_saliency.engine import Attribution
from rllib_saliency.stacks import check_model, stack_of

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_NAME = operator.attrgetter("__name__")


def is_algorithm(model: Any) -> bool:
    """An RLlib Algorithm (checked by class name and attributes: importing RLlib costs seconds)."""
    names = map(_NAME, type(model).__mro__)  # (a C-level scan: it runs on every explain() call)
    return "Algorithm" in names and hasattr(model, "config")


def _model_id(algorithm: Any, policy_id: str | None, module_id: str | None) -> str:
    if policy_id is not None and module_id is not None and policy_id != module_id:
        raise ValueError(
            f"policy_id={policy_id!r} and module_id={module_id!r} name different models; pass one of them."
        )
    wanted = policy_id if policy_id is not None else module_id
    stack = stack_of(algorithm)
    ids = stack.model_ids(algorithm)
    word = f"{stack.MODEL_WORD}_id"
    if wanted is None:
        if len(ids) != 1:
            raise ValueError(f"this algorithm has several models {ids}: pass {word}=one of them.")
        return ids[0]
    if wanted not in ids:
        raise ValueError(f"{word}={wanted!r} is not one of this algorithm's models {ids}.")
    return wanted


def current_model(algorithm: Any, policy_id: str | None = None, module_id: str | None = None) -> Any:
    """The model of ``algorithm`` that holds every target with the learner's current weights: on
    the new stack the learner's module (:func:`learner_module`), on the old stack the policy."""
    model_id = _model_id(algorithm, policy_id, module_id)
    return stack_of(algorithm).current_model(algorithm, model_id)


def learner_module(algorithm: Any, module_id: str | None = None) -> Any:
    """The learner's RLModule ``module_id`` (default: the only one) with its current weights.

    New API stack: with a local learner (``num_learners=0``; not APPO/IMPALA with env runners,
    whose learner runs remotely) the learner's own module, at no cost. With remote learners
    (``num_learners >= 1``, APPO, IMPALA) a local CPU copy, built once per algorithm and module
    and refreshed on every call with ``algo.learner_group.get_weights``: one transfer of the
    module's weights (the cost of a checkpoint of that module, in memory). Unlike
    ``algo.get_module()`` (the driver's env runner's copy) it has the value head and the
    learner's weights. On the old API stack: ``algo.get_policy(module_id)``.
    """
    if not is_algorithm(algorithm):
        raise TypeError(
            "learner_module() takes an RLlib Algorithm (config.build_algo()); "
            f"got {type(algorithm).__name__}."
        )
    return current_model(algorithm, module_id=module_id)


def _resolve(model: Any, target: str, policy_id: str | None, module_id: str | None) -> Any:
    if is_algorithm(model):
        return current_model(model, policy_id, module_id)
    if policy_id is not None or module_id is not None:
        raise ValueError(
            "policy_id/module_id choose a model of an Algorithm (explain(algo, obs, module_id=...)); "
            f"got a {type(model).__name__}, which is one model already."
        )
    check_model(model, target)
    return model


def explain(
    model: Any,
    obs: Any,
    method: str = "gradient",
    target: str = "action",
    *,
    policy_id: str | None = None,
    module_id: str | None = None,
    **options: Any,
) -> Attribution:
    """Attribute a model output to the observation features, batch-wise.

    ``model``: an RLlib ``Algorithm`` (the model holding the learner's current weights is
    explained: see :func:`learner_module`; ``policy_id=``/``module_id=`` pick one of several),
    a torch ``RLModule`` (new API stack), or an old-API-stack TF policy (``"tf"``/``"tf2"``).
    Everything else as :func:`rllib_saliency.engine.explain`.
    """
    resolved = _resolve(model, target, policy_id, module_id)
    return engine.explain(resolved, obs, method, target, **options)


def maximize_activation(
    model: Any,
    target: str = "action_1",
    *,
    policy_id: str | None = None,
    module_id: str | None = None,
    **options: Any,
) -> ActivationMaximization:
    """:func:`rllib_saliency.activation.maximize_activation` on a model, or on an ``Algorithm``'s
    model that holds the learner's current weights (as :func:`explain`)."""
    return _maximize_activation(_resolve(model, target, policy_id, module_id), target, **options)


def plot(
    attribution: Attribution,
    feature_names: Sequence[str] | None = None,
    *,
    title: str | None = None,
    max_images: int = 4,
    frame_maps: bool = False,
) -> Figure:
    """The chart the training callback logs as ``importance``, for an :func:`explain` result: a
    matplotlib ``Figure``, which a notebook displays (``figure.savefig(path)`` writes it).

    Vector observations: mean |attribution| per feature over the batch's finite rows, bars in
    feature order, named after the model's observation space (or ``feature_names``); image
    observations: the first ``max_images`` frames with their heatmaps (``frame_maps``: each
    stacked frame's too). The subtitle says the method's options and what the target is for
    the explained model's kind (a Q-network's ``action`` is its Q-value, not a logit)."""
    from rllib_saliency import render
    from rllib_saliency.summaries import default_feature_names, feature_layout, summarize
    from rllib_saliency.targets import describe_target

    if not isinstance(attribution, Attribution):
        got = type(attribution).__name__
        raise TypeError(f"plot() takes an Attribution (what explain() returns); got {got}.")
    finite = np.isfinite(attribution.target_values)
    if not finite.any():
        raise ValueError("plot(): every row of the attribution is NaN (non-finite observations).")
    image = attribution.values.ndim == 4
    if image and (isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1):
        raise ValueError(f"max_images must be a positive integer (frames shown); got {max_images!r}.")
    meaning = describe_target(attribution.target, attribution.model_kind, attribution.action_space)
    subtitle = render.chart_subtitle(
        attribution.method, attribution.options, attribution.target, image, target_text=meaning
    )
    title = title if title is not None else f"{attribution.target} / {attribution.method}"
    if image:
        rows = np.flatnonzero(finite)[:max_images]
        maps = attribution.values[rows]
        return render.saliency_grid_figure(attribution.observations[rows], maps, title, frame_maps, subtitle)
    space = attribution.observation_space
    layout = feature_layout(space) if space is not None else None
    # The callback's reduction (a structured observation's components: one bar each).
    summary = summarize(attribution, "", np.random.default_rng(0), layout.parts if layout else None)
    mean_abs = summary.sum_abs / summary.count
    names = list(feature_names) if feature_names is not None else None
    if names is not None and len(names) != len(mean_abs):
        raise ValueError(
            f"feature_names has {len(names)} names but the attribution has {len(mean_abs)} "
            "features; pass one name per feature (or None for the model's own)."
        )
    if names is None:
        names = layout.names if layout else default_feature_names(attribution.values.shape[1:])
    return render.importance_figure(mean_abs, names, title, subtitle)
