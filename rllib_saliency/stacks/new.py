"""RLlib's new API stack: torch RLModules, episodes, module ids.

Where the work runs: env runners only sample (a reservoir per module, filled
from the episodes ``on_sample_end`` receives). At a computation the driver
gathers the reservoirs and sends them to the learner, which explains them with
its own module: the only one with the value head (env runners' modules are
inference-only), always holding the current weights, on the learner's device
(a GPU if it has one). With ``num_learners=0`` the learner is in the driver
process; with remote learners the first healthy one computes
(``learner_group.foreach_learner``). Every function sent to a worker returns
errors as data and never raises: an exception inside ``foreach_env_runner``
silently takes the runner down.
"""

from __future__ import annotations

import functools
import traceback
from typing import Any

import numpy as np

from rllib_saliency.backends import check_supported
from rllib_saliency.callbacks.compute import Sample, explain_sample

NAME = "new"
DEFAULT_MODULE_ID = "default_policy"  # ray.rllib.core.DEFAULT_MODULE_ID, without importing it


def _check_module(module: Any) -> None:
    if check_supported(module) != "torch":
        raise TypeError(f"{type(module).__name__} is not a torch RLModule")


def _agent_parts(episode: Any) -> list[tuple[str, Any]]:
    """(module id, single-agent episode) pairs of a single- or multi-agent episode."""
    agent_episodes = getattr(episode, "agent_episodes", None)
    if agent_episodes is None:
        return [(getattr(episode, "module_id", None) or DEFAULT_MODULE_ID, episode)]
    return [(part.module_id, part) for part in agent_episodes.values()]


def sample(callbacks: Any, env_runner: Any, episodes: list) -> None:
    """``on_sample_end``: offer each episode chunk's (observation, action) rows to their module's reservoir.

    The rows are what the module saw only if the env-to-module connectors wrote
    their result back into the episode (``FlattenObservations`` does; the default
    pipeline passes raw observations). A module whose input shape differs from the
    episode's observations (e.g. frame stacking in a connector) is reported and skipped.
    """
    store = callbacks.store
    module = env_runner.module
    multi = hasattr(module, "keys") and callable(module.keys)
    for episode in episodes:
        for module_id, part in _agent_parts(episode):
            sub_module = module[module_id] if multi else module
            if not store.wants(module_id, sub_module, _check_module):
                continue
            actions = np.asarray(part.get_actions())
            if not len(actions):
                continue
            obs = np.asarray(part.get_observations())[: len(actions)]
            expected = tuple(sub_module.observation_space.shape)
            if obs.shape[1:] != expected:
                store.refuse(
                    module_id,
                    TypeError(
                        f"module {module_id!r} takes observations of shape {expected}, but its episodes "
                        f"hold shape {obs.shape[1:]}: an env-to-module connector (e.g. frame stacking) "
                        "builds the module input without writing it back into the episode, so the "
                        "sampled rows are not what the module saw. Stack frames in the environment "
                        "instead (e.g. wrap_atari_for_new_api_stack(env, framestack=4))."
                    ),
                )
                continue
            store.add(module_id, getattr(env_runner, "worker_index", 0), obs, actions)


def take_samples(env_runner: Any) -> dict[str, Any]:
    """Runs on an env runner: its reservoirs, drained. Returns errors as data, never raises."""
    from rllib_saliency.callbacks import find_saliency_callbacks

    try:
        callbacks = find_saliency_callbacks(env_runner)
        if callbacks is None:
            return {"errors": [("sampling", "NoCallbacks", "SaliencyCallbacks not found", 1)]}
        samples, skipped = callbacks.store.drain()
        return {"samples": samples, "skipped": skipped, "errors": callbacks.store.errors.take()}
    except BaseException as error:  # noqa: BLE001 - must not take the env runner down
        return {"errors": [("sampling", type(error).__name__, traceback.format_exc(), 1)]}


def explain_on_learner(learner: Any, samples: dict[str, Sample], settings: Any, seed: list[int]) -> dict:
    """Runs where the learner is: explain each module's samples with the learner's module."""
    try:
        modules = learner.module
        rng = np.random.default_rng(seed)
        report: dict[str, Any] = {"summaries": [], "errors": []}
        for module_id, sample in samples.items():
            if module_id not in modules.keys():
                report["errors"].append(
                    (f"policy {module_id}", "UnknownModule", f"the learner has no module {module_id!r}", 1)
                )
                continue
            summaries, errors = explain_sample(modules[module_id], module_id, sample, settings, rng)
            report["summaries"] += summaries
            report["errors"] += errors
        return report
    except BaseException as error:  # noqa: BLE001 - must not take a remote learner down
        details = traceback.format_exc()
        return {"summaries": [], "errors": [("explain on learner", type(error).__name__, details, 1)]}


def _merge_samples(parts: list[dict[str, Sample]]) -> dict[str, Sample]:
    by_module: dict[str, list[Sample]] = {}
    for part in parts:
        for module_id, sample in part.items():
            by_module.setdefault(module_id, []).append(sample)
    return {
        module_id: Sample(np.concatenate([s.obs for s in parts]), np.concatenate([s.actions for s in parts]))
        for module_id, parts in by_module.items()
    }


def collect(callbacks: Any, algorithm: Any) -> list[dict[str, Any]]:
    group = algorithm.env_runner_group
    if group.num_remote_env_runners() > 0:
        parts = group.foreach_env_runner(take_samples, local_env_runner=False, healthy_only=True)
    else:
        parts = [take_samples(algorithm.env_runner)]
    samples = _merge_samples([part.get("samples", {}) for part in parts])
    report: dict[str, Any] = {"errors": [], "skipped": {}}
    for part in parts:
        report["errors"] += part.get("errors", [])
        for module_id, count in part.get("skipped", {}).items():
            report["skipped"][module_id] = report["skipped"].get(module_id, 0) + count
    if not samples:
        return [report]
    for module_id, sample in samples.items():
        callbacks.remember(module_id, sample)
    callbacks.add_starting_points(report, samples)
    compute = functools.partial(
        explain_on_learner, samples=samples, settings=callbacks.settings, seed=callbacks.computation_seed()
    )
    results = algorithm.learner_group.foreach_learner(compute)
    outcomes = [result.get() for result in results if result.ok]
    if not outcomes:
        errors = [str(result.get()) for result in results if not result.ok] or ["no healthy learner"]
        report["errors"].append(("explain on learner", "LearnerUnavailable", "\n".join(errors), 1))
        return [report]
    # Every learner holds the same weights: the first one's report is the computation.
    return [report, outcomes[0]]


def model(algorithm: Any, module_id: str) -> Any:
    """The module of that id in the driver's env runner (inference-only: enough for spaces and
    action targets)."""
    return algorithm.get_module(module_id)


def weights_fingerprint(algorithm: Any, module_id: str) -> float:  # pragma: no cover - never asked
    raise NotImplementedError("new-stack reports are computed on the learner; they carry no fingerprints")
