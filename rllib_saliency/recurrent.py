"""Recurrent models (LSTM, attention net): the state each step was taken in.

Attributions of a recurrent policy are one-step saliency *given the state*:
the gradient of the step's output w.r.t. that step's observation, with the
recurrent state (LSTM cell/hidden state, or the attention net's memory of the
previous steps) held fixed at what the policy used while sampling.

The two kinds of model keep their state differently in RLlib's old-stack
sample batches:

* LSTM (``use_lstm``): ``state_in_k`` once per sequence (``seq_lens``) and
  ``state_out_k`` for every step.
* Attention net (``use_attention``, GTrXL): ``state_in_k`` once per sequence
  holds the memory, the last ``attention_memory_inference`` outputs of
  transformer unit ``k``; the per-step outputs (``state_out_k``) are not kept
  in the batch. A step's memory is the window of the previous steps' outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# Model options that feed previous actions/rewards into the model: the engine
# feeds observations and states only, so it refuses them (see check_supported).
PREVIOUS_ACTION_OPTIONS = (
    "lstm_use_prev_action",
    "lstm_use_prev_reward",
    "attention_use_n_prev_actions",
    "attention_use_n_prev_rewards",
)


@dataclass(frozen=True)
class RecurrentLayout:
    """What state a policy's model takes per step.

    kind: ``"none"``, ``"lstm"`` (any model whose state is one array per
        state input, carried step to step) or ``"attention"``.
    shapes: the shape of one sample's array per state input: ``(cell,)`` for an
        LSTM, ``(memory, attention_dim)`` for an attention net.
    """

    kind: str
    shapes: tuple[tuple[int, ...], ...]

    @property
    def memory(self) -> int:
        """Attention nets: how many previous steps each memory input holds."""
        return self.shapes[0][0] if self.kind == "attention" else 0


def recurrent_layout(policy: Any) -> RecurrentLayout:
    initial = [np.shape(s) for s in policy.get_initial_state()]
    if not initial:
        return RecurrentLayout("none", ())
    requirements = getattr(policy, "view_requirements", None) or {}
    shapes = []
    attention = False
    for k, shape in enumerate(initial):
        requirement = requirements.get(f"state_in_{k}")
        # The attention net's state_in is a range view over past state_outs
        # ("-M:-1"); the initial state RLlib reports is only one step of it.
        if requirement is not None and requirement.shift_from is not None:
            attention = True
            shapes.append((requirement.shift_to - requirement.shift_from + 1, *shape))
        else:
            shapes.append(tuple(shape))
    return RecurrentLayout("attention" if attention else "lstm", tuple(shapes))


def initial_states(policy: Any, n: int) -> tuple[np.ndarray, ...]:
    """The state of the first step of an episode, for ``n`` samples."""
    layout = recurrent_layout(policy)
    if layout.kind == "attention":  # an empty memory: zeros, as RLlib's collectors pad
        return tuple(np.zeros((n, *shape), np.float32) for shape in layout.shapes)
    return tuple(np.repeat(np.asarray(s, np.float32)[None], n, axis=0) for s in policy.get_initial_state())


def next_state(layout: RecurrentLayout, state: list[np.ndarray], state_out: list[Any]) -> list[np.ndarray]:
    """One sample's state for the next step, from this step's state and outputs."""
    if layout.kind == "attention":
        # The memory window moves on by one step.
        return [
            np.concatenate([s[1:], np.asarray(out, np.float32)[None]])
            for s, out in zip(state, state_out, strict=True)
        ]
    return [np.asarray(out, np.float32) for out in state_out]


def per_step_states(batch: Any, policy: Any) -> tuple[np.ndarray, ...]:
    """The recurrent state each row's step was taken in, from an old-stack sample batch.

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
    for k in range(len(layout.shapes)):
        state_in = np.asarray(batch[f"state_in_{k}"], np.float32)
        if len(state_in) != len(seq_lens):
            raise ValueError(
                f"cannot align recurrent states: {len(state_in)} state_in_{k} rows for "
                f"{len(seq_lens)} sequences"
            )
        state_ins.append(state_in)
    if layout.kind == "lstm":
        return tuple(
            _lstm_steps(state_in, np.asarray(batch[f"state_out_{k}"], np.float32), starts, seq_lens)
            for k, state_in in enumerate(state_ins)
        )
    return _attention_steps(policy, np.asarray(batch["obs"], np.float32), state_ins, starts, seq_lens)


def _lstm_steps(
    state_in: np.ndarray, state_out: np.ndarray, starts: np.ndarray, seq_lens: np.ndarray
) -> np.ndarray:
    per_step = np.empty_like(state_out)
    for index, (start, length) in enumerate(zip(starts, seq_lens, strict=True)):
        per_step[start] = state_in[index]
        per_step[start + 1 : start + length] = state_out[start : start + length - 1]
    return per_step


def _attention_steps(
    policy: Any, obs: np.ndarray, state_ins: list[np.ndarray], starts: np.ndarray, seq_lens: np.ndarray
) -> tuple[np.ndarray, ...]:
    from rllib_saliency.backends import backend_for

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
        outputs = backend.forward(obs[rows], tuple(p[rows] for p in per_step))
        for k, memory in enumerate(memories):
            memory[active] = np.concatenate([memory[active, 1:], outputs.state_outs[k][:, None]], axis=1)
    return tuple(per_step)
