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

Models fed the previous action/reward (``lstm_use_prev_action``,
``attention_use_n_prev_actions``, ...) read ``prev_actions``/``prev_rewards``
columns, kept per step in the batch; they are held fixed the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Batch columns besides the observation and the states that RLlib's recurrent
# wrappers read (lstm_use_prev_action/reward, attention_use_n_prev_actions/rewards).
PREVIOUS_INPUTS = ("prev_actions", "prev_rewards")


@dataclass(frozen=True)
class StepInput:
    """One model input besides the observation, held fixed while explaining a step."""

    name: str  # "state_in_K", "prev_actions" or "prev_rewards"
    shape: tuple[int, ...]  # one sample's
    dtype: np.dtype


@dataclass(frozen=True)
class RecurrentLayout:
    """What a policy's model takes per step besides the observation.

    kind: ``"none"``, ``"lstm"`` (any model whose state is one array per
        state input, carried step to step; a stateful torch RLModule's state
        leaves, named ``state_in_h``, ``state_in_c``, ...) or ``"attention"``.
    inputs: the state inputs (``(cell,)`` each for an LSTM, ``(memory,
        attention_dim)`` for an attention net), then the previous
        actions/rewards the model is fed, if any.
    """

    kind: str
    inputs: tuple[StepInput, ...]

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(i.shape for i in self.inputs)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.inputs)

    @property
    def num_states(self) -> int:
        return sum(1 for i in self.inputs if i.name.startswith("state_in_"))

    def split(self, values: Sequence[Any]) -> tuple[list[Any], dict[str, Any]]:
        """``(states, {"prev_actions": ..., ...})`` from one value per input, in order."""
        n = self.num_states
        return list(values[:n]), dict(zip(self.names[n:], values[n:], strict=True))


def initial_state_arrays(policy: Any) -> list[np.ndarray]:
    """One sample's initial state, one array per state input. A torch RLModule's state is a
    nested dict of tensors (e.g. ``{"h": ..., "c": ...}``): its leaves in ``tree.flatten`` order."""
    state = policy.get_initial_state()
    if isinstance(state, dict):
        import tree

        return [
            np.asarray(leaf.detach().cpu() if hasattr(leaf, "detach") else leaf)
            for leaf in tree.flatten(state)
        ]
    return [np.asarray(s) for s in state]


def recurrent_layout(policy: Any) -> RecurrentLayout:
    state = policy.get_initial_state()
    if isinstance(state, dict):  # a torch RLModule (new stack): its state leaves, by path
        import tree

        leaves = tree.flatten_with_path(state)
        if not leaves:
            return RecurrentLayout("none", ())
        return RecurrentLayout(
            "lstm",
            tuple(
                StepInput(
                    "state_in_" + "_".join(str(k) for k in path), tuple(leaf.shape), np.dtype(np.float32)
                )
                for path, leaf in leaves
            ),
        )
    initial = [np.shape(s) for s in state]
    if not initial:
        return RecurrentLayout("none", ())
    requirements = getattr(policy.model, "view_requirements", None) or {}
    inputs = []
    attention = False
    for k, shape in enumerate(initial):
        requirement = requirements.get(f"state_in_{k}")
        # The attention net's state_in is a range view over past state_outs
        # ("-M:-1"); the initial state RLlib reports is only one step of it.
        if requirement is not None and requirement.shift_from is not None:
            attention = True
            shape = (requirement.shift_to - requirement.shift_from + 1, *shape)
        inputs.append(StepInput(f"state_in_{k}", tuple(shape), np.dtype(np.float32)))
    for name in PREVIOUS_INPUTS:
        requirement = requirements.get(name)
        if requirement is None:
            continue
        if name == "prev_actions":
            space = policy.action_space
            shape, dtype = tuple(space.shape), np.dtype(space.dtype)
        else:
            shape, dtype = (), np.dtype(np.float32)
        # One step's (shift -1): windows of n steps are refused by check_supported.
        inputs.append(StepInput(name, shape, dtype))
    return RecurrentLayout("attention" if attention else "lstm", tuple(inputs))


def initial_states(policy: Any, n: int) -> tuple[np.ndarray, ...]:
    """The step inputs of an episode's first step, for ``n`` samples.

    The policy's initial state; an attention net's memory is empty (zeros, as
    RLlib's collectors pad), and so are the previous actions and rewards.
    """
    state = policy.get_initial_state()
    if isinstance(state, dict) and not state:
        return ()  # a stateless torch RLModule (most): skip the layout, on every explain() call
    layout = recurrent_layout(policy)
    initial = initial_state_arrays(policy)
    arrays = []
    for k, step_input in enumerate(layout.inputs):
        if layout.kind == "lstm" and k < layout.num_states:
            arrays.append(np.repeat(np.asarray(initial[k], np.float32)[None], n, axis=0))
        else:
            arrays.append(np.zeros((n, *step_input.shape), step_input.dtype))
    return tuple(arrays)


def next_step_inputs(
    layout: RecurrentLayout, inputs: list[np.ndarray], state_out: list[Any], action: Any, reward: float
) -> list[np.ndarray]:
    """One sample's step inputs for the next step, from this step's inputs, outputs, action and reward."""
    following = []
    for k, (step_input, current) in enumerate(zip(layout.inputs, inputs, strict=True)):
        if k >= layout.num_states:
            following.append(
                np.asarray(action if step_input.name == "prev_actions" else reward, step_input.dtype)
            )
            continue
        new = np.asarray(state_out[k], np.float32)
        # An attention net's memory window moves on by one step; an LSTM's state is replaced.
        following.append(np.concatenate([current[1:], new[None]]) if layout.kind == "attention" else new)
    return following


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
        outputs = backend.forward(obs[rows], tuple(p[rows] for p in (*per_step, *previous)))
        for k, memory in enumerate(memories):
            memory[active] = np.concatenate([memory[active, 1:], outputs.state_outs[k][:, None]], axis=1)
    return tuple(per_step)
