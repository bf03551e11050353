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

This module describes a model's step inputs (layout, initial state) and imports
no other module of the package: the backends build on it. Rebuilding each step's
inputs from a sample batch runs the model (attention nets), so it lives with the
old stack's batches: :func:`rllib_saliency.stacks.old.per_step_states`.
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
