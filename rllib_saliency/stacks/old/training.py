"""RLlib's old API stack: TF policies, ``SampleBatch``es, policy ids.

Each env runner that samples keeps a reservoir per policy; at a computation the
driver asks every healthy runner, in parallel, to explain its reservoir with its
own copy of the policy (``foreach_env_runner``) and send back summaries plus a
weights fingerprint, which the driver checks against the learner's policy.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from rllib_saliency.backends import check_supported, policy_mode
from rllib_saliency.sample_summaries import FULL, ComputationPlan, explain_sample
from rllib_saliency.stacks.old.batches import per_step_states

NAME = "old"


def _check_policy(policy: Any) -> bool:
    """False for policies that are no TF policy (e.g. a random policy); TypeError for TF policies
    whose model the engine cannot handle."""
    if policy_mode(policy) not in ("graph", "eager"):
        return False
    check_supported(policy)
    return True


def sample(callbacks: Any, worker: Any, samples: Any) -> None:
    """``on_sample_end``: offer each policy's batch to its reservoir."""
    store = callbacks.store
    for policy_id, batch in samples.as_multi_agent().policy_batches.items():
        policy = worker.policy_map[policy_id]
        if store.wants(policy_id, policy, _check_policy):
            extras = per_step_states(batch, policy)
            store.add(policy_id, getattr(worker, "worker_index", 0), batch["obs"], batch["actions"], extras)


def weights_fingerprint(policy_or_algorithm: Any, policy_id: str | None = None) -> float:
    policy = policy_or_algorithm if policy_id is None else policy_or_algorithm.get_policy(policy_id)
    weights = policy.get_weights()
    arrays = weights.values() if isinstance(weights, dict) else weights
    return float(sum(np.asarray(w, np.float64).sum() for w in arrays))


def compute_on_env_runner(
    worker: Any, find: Callable[[Any], Any], plan: ComputationPlan = FULL
) -> dict[str, Any]:
    """Runs on an env runner: explain the reservoirs of the callbacks ``find`` finds on it, as far
    as ``plan`` allows. Returns errors as data, never raises."""
    try:
        callbacks = find(worker)
        if callbacks is None:
            return {"summaries": [], "errors": [("compute", "NoCallbacks", "SaliencyCallbacks not found", 1)]}
        samples, skipped = callbacks.store.drain()
        report: dict[str, Any] = {
            "summaries": [],
            "errors": callbacks.store.errors.take(),
            "fingerprints": {},
            "skipped": skipped,
            "deferred": {},
        }
        for policy_id, sample in samples.items():
            callbacks.remember(policy_id, sample)
            try:
                policy = worker.policy_map[policy_id]
                report["fingerprints"][policy_id] = weights_fingerprint(policy)
            except Exception:  # noqa: BLE001
                report["errors"].append((f"policy {policy_id}", "PolicyError", traceback.format_exc(), 1))
                continue
            explained = explain_sample(
                policy, policy_id, sample, callbacks.settings, callbacks.rng, plan=plan
            )
            report["summaries"] += explained.summaries
            report["errors"] += explained.errors
            report["deferred"].update({f"{policy_id}/{k}": v for k, v in explained.deferred.items()})
        callbacks.add_starting_points(report, samples)
        return report
    except BaseException as error:  # noqa: BLE001 - must not take the env runner down
        return {"summaries": [], "errors": [("compute", type(error).__name__, traceback.format_exc(), 1)]}


def collect(
    callbacks: Any, algorithm: Any, find: Callable[[Any], Any], plan: ComputationPlan = FULL
) -> list[dict[str, Any]]:
    """Driver side: every env runner explains its own reservoirs. ``find(runner)`` returns the
    runner's callbacks instance (passed in: the callback package is a floor above)."""
    group = algorithm.env_runner_group
    compute = functools.partial(compute_on_env_runner, find=find, plan=plan)
    if group.num_remote_env_runners() > 0:
        return group.foreach_env_runner(compute, local_env_runner=False, healthy_only=True)
    return [compute(algorithm.env_runner)]


def model(algorithm: Any, policy_id: str) -> Any:
    return algorithm.get_policy(policy_id)


def model_ids(algorithm: Any) -> list[str]:
    """The ids of the driver's policies."""
    return sorted(algorithm.env_runner.policy_map.keys())


def current_model(algorithm: Any, policy_id: str) -> Any:
    """The model that holds every target with the current weights: the driver's policy, which is
    the one that learns on the old stack."""
    return algorithm.get_policy(policy_id)


def episode_data(algorithm: Any, policy_id: str, settings: Any, seed: int, label: str) -> Any:
    """Driver side, ``episode_every``: one greedy episode (at most ``episode_max_steps`` steps) of
    the driver's policy (the learner's, current weights) in a fresh env from the algorithm's config,
    with both heads' maps at every step (:mod:`rllib_saliency.movie`)."""
    from rllib_saliency.movie import compute_movie_data
    from rllib_saliency.stacks.old.rollout import play_old_stack

    policy = algorithm.get_policy(policy_id)
    if policy is None or not _check_policy(policy):
        raise TypeError(f"policy {policy_id!r} is not a TF policy; training episodes need one.")
    [record] = play_old_stack(policy, policy.config, 1, seed, settings.episode_max_steps)
    data, _ = compute_movie_data(
        policy,
        record,
        settings.episode_method,
        settings.episode_method_options(),
        policy_id=policy_id,
        checkpoint=label,
        feature_names=settings.feature_names_for(policy_id, int(record.observations[0].size)),
    )
    return data
