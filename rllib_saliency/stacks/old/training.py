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

from rllib_saliency.backends import backend_for, check_supported, policy_mode
from rllib_saliency.recurrent import recurrent_layout
from rllib_saliency.sample_summaries import explain_sample

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


def compute_on_env_runner(worker: Any, find: Callable[[Any], Any]) -> dict[str, Any]:
    """Runs on an env runner: explain the reservoirs of the callbacks ``find`` finds on it.
    Returns errors as data, never raises."""
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
        }
        for policy_id, sample in samples.items():
            callbacks.remember(policy_id, sample)
            try:
                policy = worker.policy_map[policy_id]
                report["fingerprints"][policy_id] = weights_fingerprint(policy)
            except Exception:  # noqa: BLE001
                report["errors"].append((f"policy {policy_id}", "PolicyError", traceback.format_exc(), 1))
                continue
            summaries, errors = explain_sample(policy, policy_id, sample, callbacks.settings, callbacks.rng)
            report["summaries"] += summaries
            report["errors"] += errors
        callbacks.add_starting_points(report, samples)
        return report
    except BaseException as error:  # noqa: BLE001 - must not take the env runner down
        return {"summaries": [], "errors": [("compute", type(error).__name__, traceback.format_exc(), 1)]}


def collect(callbacks: Any, algorithm: Any, find: Callable[[Any], Any]) -> list[dict[str, Any]]:
    """Driver side: every env runner explains its own reservoirs. ``find(runner)`` returns the
    runner's callbacks instance (passed in: the callback package is a floor above)."""
    group = algorithm.env_runner_group
    compute = functools.partial(compute_on_env_runner, find=find)
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
    from rllib_saliency.movie.rollout import play_old_stack

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


# --- recurrent step inputs of a SampleBatch (old stack's columns) ---


def per_step_states(batch: Any, policy: Any) -> tuple[np.ndarray, ...]:
    """The step inputs each row's step was taken in, from an old-stack sample batch:
    the recurrent states, then the previous actions/rewards if the model is fed them.

    LSTM: a sequence's first step starts from its ``state_in``, every later
    step from the previous step's ``state_out``. Attention net: the memory at a
    sequence's first step is its ``state_in``; each step's memory outputs (run
    through the policy's model, as RLlib computed them while sampling) then
    move the window on. Empty for feed-forward models.
    """
    layout = recurrent_layout(policy)
    if layout.kind == "none":
        return ()
    seq_lens = np.asarray(batch["seq_lens"], np.int64)
    n = len(batch["obs"])
    if int(seq_lens.sum()) != n:
        raise ValueError(f"cannot align recurrent states: seq_lens sum to {int(seq_lens.sum())} for {n} rows")
    starts = np.concatenate([[0], np.cumsum(seq_lens)[:-1]])
    state_ins = []
    for k in range(layout.num_states):
        state_in = np.asarray(batch[f"state_in_{k}"], np.float32)
        if len(state_in) != len(seq_lens):
            raise ValueError(
                f"cannot align recurrent states: {len(state_in)} state_in_{k} rows for "
                f"{len(seq_lens)} sequences"
            )
        state_ins.append(state_in)
    previous = tuple(
        np.asarray(batch[i.name]).astype(i.dtype).reshape(n, *i.shape)
        for i in layout.inputs[layout.num_states :]
    )
    if layout.kind == "lstm":
        states = tuple(
            _lstm_steps(state_in, np.asarray(batch[f"state_out_{k}"], np.float32), starts, seq_lens)
            for k, state_in in enumerate(state_ins)
        )
    else:
        states = _attention_steps(
            policy, np.asarray(batch["obs"], np.float32), state_ins, previous, starts, seq_lens
        )
    return states + previous


def _lstm_steps(
    state_in: np.ndarray, state_out: np.ndarray, starts: np.ndarray, seq_lens: np.ndarray
) -> np.ndarray:
    per_step = np.empty_like(state_out)
    for index, (start, length) in enumerate(zip(starts, seq_lens, strict=True)):
        per_step[start] = state_in[index]
        per_step[start + 1 : start + length] = state_out[start : start + length - 1]
    return per_step


def _attention_steps(
    policy: Any,
    obs: np.ndarray,
    state_ins: list[np.ndarray],
    previous: tuple[np.ndarray, ...],
    starts: np.ndarray,
    seq_lens: np.ndarray,
) -> tuple[np.ndarray, ...]:
    backend = backend_for(policy)
    backend.sync_weights()
    memories = [s.copy() for s in state_ins]
    per_step = [np.empty((len(obs), *s.shape[1:]), np.float32) for s in state_ins]
    # Step j of every sequence at once: one model run per position, not per row.
    for j in range(int(seq_lens.max(initial=0))):
        active = np.flatnonzero(seq_lens > j)
        rows = starts[active] + j
        for k, memory in enumerate(memories):
            per_step[k][rows] = memory[active]
        outputs = backend.forward(obs[rows], tuple(p[rows] for p in (*per_step, *previous)))
        for k, memory in enumerate(memories):
            memory[active] = np.concatenate([memory[active, 1:], outputs.state_outs[k][:, None]], axis=1)
    return tuple(per_step)
