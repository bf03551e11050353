"""Recurrent step inputs of an old-API-stack ``SampleBatch`` (the old stack's columns): what the
training hooks keep with each sampled row, and what the CLI's rollouts record."""

from __future__ import annotations

from typing import Any

import numpy as np

from rllib_saliency.backends import backend_for
from rllib_saliency.recurrent import recurrent_layout


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
