"""Offline algorithms (BC, MARWIL, CQL) on RLlib's new API stack: rows from the training data.

An offline algorithm (``config.is_offline``: ``input_`` names data files) has no env
runners sampling while it trains (BC, MARWIL: ``algorithm.env_runner_group`` is None;
CQL keeps one idle local env runner): its learners read the data set. So the
rows explained come from the data the learner trains on. At ``on_algorithm_init``
each learner's batch update (``Learner._update``, called once per training
minibatch with ``{module_id: {column: tensor}}`` after the learner connectors, so
its observations are exactly the module's training inputs) is wrapped: before the
update, the minibatch's observations and actions are offered to a reservoir kept on
the learner, the same ``SampleStore`` (``num_samples`` rows per module, uniform over
everything since the last computation) the env runners keep online. At a computation
the driver drains every learner's reservoir (``learner_group.foreach_learner``) and
the learner's module explains the rows, as online (:func:`stacks.new.training.explain_parts`).

Everything else is the online adapter's (:mod:`rllib_saliency.stacks.new`), with the
learner's module standing in for the env runner's (there is none): its spaces for
names and activation maximization, and for training episodes (``episode_every``)
played through env-to-module and module-to-env pipelines built from the config,
when the config names an environment (else skipped, said once).

The CLI rolls out an offline checkpoint (it saves no env-runner connectors) through
pipelines built the same way from the checkpoint's config
(:func:`~rllib_saliency.stacks.new.offline_env.connectors_from_config`, in a module of its own
that imports no other stack module, so the CLI can use it).
"""

from __future__ import annotations

import functools
import inspect
import logging
import traceback
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from rllib_saliency.sample_summaries import FULL, ComputationPlan
from rllib_saliency.stacks.new.offline_env import connectors_from_config, is_offline_config
from rllib_saliency.stacks.new.training import (
    NAME,
    _check_module,
    current_model,
    explain_parts,
    learner_module,
    model_ids,
    play_and_explain,
)

logger = logging.getLogger("rllib_saliency")

__all__ = [
    "NAME",
    "collect",
    "connectors_from_config",
    "current_model",
    "episode_data",
    "episode_skip_reason",
    "install",
    "is_offline_config",
    "model",
    "model_ids",
]

# The learner method wrapped to see each training minibatch. It is PRIVATE RLlib API (ray 2.60:
# ``Learner._update(self, batch)``, batch = ``{module_id: {column: tensor}}``, called by
# ``Learner.update`` once per minibatch); there is no public per-minibatch hook. If RLlib
# renames it or changes its signature, installing fails with one clear error (and no rows).
UPDATE_METHOD = "_update"
# Where the reservoir lives on the learner (an attribute of the Learner instance).
STORE_ATTRIBUTE = "_rllib_saliency_offline_store"
# Marks a learner whose update could not be wrapped (the error is reported once).
UNSUPPORTED = "unsupported"

# Per algorithm: errors from installing the hook, reported with the next computation (once).
_install_errors: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


def _check_offline_module(module: Any) -> bool:
    """Torch modules the engine explains, stateless: a stateful module's training rows carry a time
    axis and padding, not one observation per row."""
    if not _check_module(module):
        return False
    if module.is_stateful():
        raise TypeError(
            f"{type(module).__name__} is stateful: its offline training batches hold padded sequences, "
            "not one observation per row; rllib-saliency samples offline training data of stateless "
            "modules only (explain a stateful module with explain(algo, obs, states=...))."
        )
    return True


def _offer(store: Any, learner: Any, batch: Any) -> None:
    """One training minibatch's (observation, action) rows to the learner's reservoir; never raises."""
    from ray.rllib.core.columns import Columns

    try:
        modules = learner.module
        for module_id, columns in batch.items():
            if module_id not in modules.keys():
                continue
            module = modules[module_id]
            if not store.wants(module_id, module, _check_offline_module):
                continue
            if Columns.OBS not in columns or Columns.ACTIONS not in columns:
                store.refuse(
                    module_id,
                    TypeError(
                        f"module {module_id!r}: its training batches hold no {Columns.OBS!r} and "
                        f"{Columns.ACTIONS!r} columns (they hold {sorted(columns)}), so no rows to explain."
                    ),
                )
                continue
            obs, actions = _numpy(columns[Columns.OBS]), _numpy(columns[Columns.ACTIONS])
            if Columns.LOSS_MASK in columns:  # rows RLlib leaves out of the loss (padding)
                mask = _numpy(columns[Columns.LOSS_MASK]).astype(bool).reshape(len(obs))
                obs, actions = obs[mask], actions[mask]
            expected = tuple(module.observation_space.shape)
            if obs.shape[1:] != expected:
                store.refuse(
                    module_id,
                    TypeError(
                        f"module {module_id!r} takes observations of shape {expected}, but its training "
                        f"batches hold shape {obs.shape[1:]}; rllib-saliency explains one observation "
                        "array per row."
                    ),
                )
                continue
            if len(obs):
                store.add(module_id, 0, obs, actions)
    except Exception as error:  # noqa: BLE001 - the update (training) must go on
        store.errors.exception("sampling", error)


def _hook_learner(learner: Any, make_store: Callable[[], Any]) -> tuple | None:
    """Runs where each learner is: wrap its batch update so that every training minibatch feeds a
    reservoir kept on the learner. Once per learner. Returns an error record, or None; never raises."""
    try:
        current = getattr(learner, STORE_ATTRIBUTE, None)
        if current is not None:
            return None  # already wrapped (e.g. a second on_algorithm_init with this learner)
        original = getattr(learner, UPDATE_METHOD, None)
        parameters = list(inspect.signature(original).parameters) if callable(original) else []
        if not parameters or parameters[0] != "batch":
            setattr(learner, STORE_ATTRIBUTE, UNSUPPORTED)
            found = f"{UPDATE_METHOD}({', '.join(parameters)})" if callable(original) else "nothing"
            return (
                "offline sampling",
                "UnsupportedRLlib",
                f"{type(learner).__name__}.{UPDATE_METHOD}(batch) is not there ({found} found): "
                "rllib-saliency reads offline training minibatches through this private RLlib method "
                "(ray 2.60), which this RLlib version changed; no rows are sampled, so nothing is "
                "explained during offline training (explain(algo, obs) still works).",
                1,
            )
        store = make_store()

        @functools.wraps(original)
        def update(batch: Any, *args: Any, **kwargs: Any) -> Any:
            _offer(store, learner, batch)
            return original(batch, *args, **kwargs)

        setattr(learner, STORE_ATTRIBUTE, store)
        setattr(learner, UPDATE_METHOD, update)  # an instance attribute: shadows the class's method
        return None
    except BaseException:  # noqa: BLE001 - must not take a remote learner down
        return ("offline sampling", "HookFailed", traceback.format_exc(), 1)


def install(callbacks: Any, algorithm: Any) -> None:
    """``on_algorithm_init`` of an offline algorithm: wrap every learner's batch update (see
    :func:`_hook_learner`). A failure is logged now and reported once with the next computation."""
    # The store's class comes from the callback (a floor above): SampleStore, as on env runners.
    make_store = functools.partial(type(callbacks.store), callbacks.settings)
    results = algorithm.learner_group.foreach_learner(functools.partial(_hook_learner, make_store=make_store))
    errors = []
    for result in results:
        unavailable = ("offline sampling", "LearnerUnavailable", str(result.get()), 1)
        error = result.get() if result.ok else unavailable
        if error is not None:
            errors.append(error)
    if errors:
        logger.error("rllib_saliency: offline training data cannot be sampled: %s", errors[0][2])
        _install_errors[algorithm] = errors


def take_from_learner(learner: Any, make_store: Callable[[], Any]) -> dict[str, Any]:
    """Runs where each learner is: its reservoir, drained (a learner RLlib recreated after
    ``on_algorithm_init`` is wrapped now). Returns errors as data, never raises."""
    try:
        store = getattr(learner, STORE_ATTRIBUTE, None)
        if store is None:
            error = _hook_learner(learner, make_store)
            return {"errors": [error] if error else []}
        if store == UNSUPPORTED:
            return {}
        samples, skipped = store.drain()
        return {"samples": samples, "skipped": skipped, "errors": store.errors.take()}
    except BaseException:  # noqa: BLE001 - must not take a remote learner down
        return {"errors": [("offline sampling", "TakeFailed", traceback.format_exc(), 1)]}


def collect(
    callbacks: Any, algorithm: Any, find: Callable[[Any], Any], plan: ComputationPlan = FULL
) -> list[dict[str, Any]]:
    """Driver side: the learners' reservoirs of training rows, explained by the learner's module."""
    make_store = functools.partial(type(callbacks.store), callbacks.settings)
    results = algorithm.learner_group.foreach_learner(
        functools.partial(take_from_learner, make_store=make_store)
    )
    parts = [result.get() for result in results if result.ok]
    failed = [str(result.get()) for result in results if not result.ok]
    if failed:
        parts.append({"errors": [("offline sampling", "LearnerUnavailable", "\n".join(failed), 1)]})
    install_errors = _install_errors.pop(algorithm, [])
    if install_errors:
        parts.append({"errors": install_errors})
    return explain_parts(callbacks, algorithm, parts, plan)


def model(algorithm: Any, module_id: str) -> Any:
    """The learner's module (there is no env runner's): spaces, names, activation maximization."""
    return learner_module(algorithm, module_id)


def episode_skip_reason(algorithm: Any) -> str | None:
    """Why this offline run gets no training episodes (said once by the callback), or None."""
    if algorithm.config.env is None:
        return (
            "training episodes (episode_every) of an offline algorithm are played in the config's "
            "environment, and this config names none (config.environment(env=...))"
        )
    return None


def episode_data(algorithm: Any, module_id: str, settings: Any, seed: int, label: str) -> Any:
    """``episode_every``: one greedy episode played by the learner's module in a fresh env from the
    config, through pipelines built from the config (:func:`connectors_from_config`); the
    learner's module computes both heads' maps (:func:`stacks.new.training.play_and_explain`)."""
    from rllib_saliency.backends.torch import module_device

    module = learner_module(algorithm, module_id)

    def pipelines(env: Any) -> tuple[Any, Any]:
        return connectors_from_config(
            algorithm.config, env.observation_space, env.action_space, module_device(module)
        )

    return play_and_explain(algorithm, module, module_id, pipelines, settings, seed, label)
