"""Targets: which scalar of the policy's output an attribution explains.

A target name (``"action"``, ``"action_K"``, ``"logp"``, ``"value"``) is parsed
against the policy's action space into a :class:`TargetSpec`, then resolved on
a batch of observations into a :class:`ResolvedTarget` that fixes per-sample
choices (the greedy action, the action whose log-probability is explained).
Fixing them at the original observations matters for path and noise methods:
the explained quantity must not switch class along the path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import gymnasium as gym
import numpy as np

TARGET_NAMES = ("action", "action_K", "logp", "value", "advantage")

TargetKind = Literal["greedy_logit", "dist_input", "logp", "value", "advantage"]


@dataclass(frozen=True)
class TargetSpec:
    """A parsed target name.

    ``dist_input``: column ``column`` of the model output. ``greedy_logit``: the
    largest of the ``size`` logits starting at ``column`` (a Discrete action, or
    one sub-action of a MultiDiscrete one).
    """

    name: str
    kind: TargetKind
    column: int | None = None
    size: int | None = None


@dataclass(frozen=True)
class ResolvedTarget:
    """A target with its per-sample choices fixed, as a backend evaluates it.

    kind ``dist_input``: ``columns[i]`` is the column of the model output
    (logit or Gaussian mean) explained for sample ``i``.
    kind ``logp``: ``actions[i]`` is the action whose log-probability is explained.
    kind ``value``: the value-function output; no per-sample choice, except for models whose
    value is a Q-value at an action held fixed (SAC: ``actions[i]``).
    kind ``advantage``: a dueling Q-network's advantage of action ``columns[i]``.
    ``states``: for recurrent models, the recurrent state each sample's step was
    taken in (one array per state input); the target is conditioned on it.
    """

    kind: Literal["dist_input", "logp", "value", "advantage"]
    columns: np.ndarray | None = None
    actions: np.ndarray | None = None
    states: tuple[np.ndarray, ...] = ()

    def take(self, rows: np.ndarray | slice) -> ResolvedTarget:
        """The same target restricted to some rows of the batch."""
        return ResolvedTarget(
            self.kind,
            None if self.columns is None else self.columns[rows],
            None if self.actions is None else self.actions[rows],
            tuple(state[rows] for state in self.states),
        )


def concatenate_targets(parts: list[ResolvedTarget]) -> ResolvedTarget:
    """Targets resolved for consecutive chunks of a batch, as one (the inverse of ``take``)."""
    first = parts[0]

    def joined(arrays: list[np.ndarray | None]) -> np.ndarray | None:
        return None if arrays[0] is None else np.concatenate(arrays)

    return ResolvedTarget(
        first.kind,
        joined([p.columns for p in parts]),
        joined([p.actions for p in parts]),
        tuple(np.concatenate(leaves) for leaves in zip(*(p.states for p in parts), strict=True)),
    )


def action_dimensions(action_space: gym.Space) -> int:
    """How many ``action_K`` targets the action space has: logits (Discrete),
    Gaussian means (Box) or sub-actions (MultiDiscrete)."""
    if isinstance(action_space, gym.spaces.Discrete):
        return int(action_space.n)
    if isinstance(action_space, gym.spaces.Box):
        return int(np.prod(action_space.shape))
    if isinstance(action_space, gym.spaces.MultiDiscrete):
        return int(np.asarray(action_space.nvec).size)
    raise ValueError(
        f"target 'action'/'action_K' supports Discrete, MultiDiscrete and Box action spaces, "
        f"not {action_space}; use target='logp' or target='value' for this policy."
    )


def action_targets(action_space: gym.Space) -> list[str]:
    """What ``"action"`` expands to in the training callback: every Box dimension and
    every MultiDiscrete sub-action gets its own target; Discrete keeps ``"action"``."""
    if isinstance(action_space, (gym.spaces.Box, gym.spaces.MultiDiscrete)):
        return [f"action_{k}" for k in range(action_dimensions(action_space))]
    return ["action"]


def _sub_action(action_space: gym.spaces.MultiDiscrete, k: int, name: str) -> TargetSpec:
    sizes = np.asarray(action_space.nvec).reshape(-1)
    return TargetSpec(name, "greedy_logit", int(sizes[:k].sum()), int(sizes[k]))


def parse_target(name: str, action_space: gym.Space) -> TargetSpec:
    """Parse a target name against an action space; ValueError names the valid ones."""
    if not isinstance(name, str):
        raise ValueError(f"target must be a string, one of {TARGET_NAMES}; got {name!r}")
    if name == "logp":
        return TargetSpec(name, "logp")
    if name == "value":
        return TargetSpec(name, "value")
    if name == "advantage":  # (a dueling Q-network's: backends refuse it for other models, naming them)
        return TargetSpec(name, "advantage")
    if name == "action":
        if isinstance(action_space, gym.spaces.Discrete):
            return TargetSpec(name, "greedy_logit", 0, int(action_space.n))
        if isinstance(action_space, gym.spaces.MultiDiscrete):
            return _sub_action(action_space, 0, name)
        action_dimensions(action_space)  # raises for unsupported spaces
        return TargetSpec(name, "dist_input", 0)
    match = re.fullmatch(r"action_(\d+)", name)
    if match:
        column = int(match.group(1))
        size = action_dimensions(action_space)
        if column >= size:
            raise ValueError(
                f"target {name!r} is out of range: action space {action_space} has "
                f"{size} action dimensions, so valid targets are action_0 .. action_{size - 1}."
            )
        if isinstance(action_space, gym.spaces.MultiDiscrete):
            return _sub_action(action_space, column, name)
        return TargetSpec(name, "dist_input", column)
    raise ValueError(
        f"unknown target {name!r}; valid targets are 'action', 'action_K' "
        "(K an action index or dimension), 'logp', 'value' and 'advantage' (dueling Q-networks)."
    )


def needs_forward(spec: TargetSpec, actions: np.ndarray | None, value_needs_action: bool = False) -> bool:
    """Whether resolving ``spec`` needs the policy's outputs (greedy action) first.
    ``value_needs_action``: the model's value is a Q-value at an action (SAC), fixed at the
    greedy action unless ``actions`` are given."""
    if spec.kind == "value":
        return value_needs_action and actions is None
    return spec.kind in ("greedy_logit", "advantage") or (spec.kind == "logp" and actions is None)


def resolve_target(
    spec: TargetSpec,
    n: int,
    dist_inputs: np.ndarray | None,
    greedy_actions: np.ndarray | None,
    actions: np.ndarray | None,
    states: tuple[np.ndarray, ...] = (),
    value_needs_action: bool = False,
) -> ResolvedTarget:
    """Fix per-sample choices from the policy's outputs at the original observations.

    ``dist_inputs`` and ``greedy_actions`` are only read when
    :func:`needs_forward` says so (same ``value_needs_action``). With no rows (a batch whose rows
    are all non-finite) there is nothing to choose and no outputs are read.
    """
    if n == 0 and needs_forward(spec, actions, value_needs_action):
        kind = "dist_input" if spec.kind == "greedy_logit" else spec.kind
        empty = np.zeros(0, np.int32)
        if kind in ("dist_input", "advantage"):
            return ResolvedTarget(kind, columns=empty, states=states)
        return ResolvedTarget(kind, actions=empty, states=states)
    if spec.kind == "greedy_logit":
        logits = dist_inputs[:, spec.column : spec.column + spec.size]
        columns = np.argmax(logits, axis=1).astype(np.int32)
        if spec.column:  # (a later sub-action of a MultiDiscrete action: its first logit's column)
            columns += spec.column
        return ResolvedTarget("dist_input", columns=columns, states=states)
    if spec.kind == "dist_input":
        return ResolvedTarget("dist_input", columns=np.full(n, spec.column, dtype=np.int32), states=states)
    if spec.kind == "logp":
        return ResolvedTarget("logp", actions=greedy_actions if actions is None else actions, states=states)
    if spec.kind == "advantage":
        chosen = greedy_actions if actions is None else actions
        columns = np.asarray(chosen).reshape(-1).astype(np.int32)
        return ResolvedTarget("advantage", columns=columns, states=states)
    if value_needs_action:
        return ResolvedTarget("value", actions=greedy_actions if actions is None else actions, states=states)
    return ResolvedTarget("value", states=states)


# What a target's number is, by kind of model (``backends.model_kind``): a chart's subtitle says
# it, so that a Q-value is not read as a logit. None: the kind is not known (all cases named).
MODEL_KINDS = ("policy", "q", "sac")
_GENERIC_MEANINGS = {
    "action": "action = the greedy action's logit (Q-networks: its Q-value)",
    "logp": "logp = log-probability of the action taken",
    "value": "value = the value function's estimate (Q-networks: max Q; SAC: min twin Q, greedy action)",
    "advantage": "advantage = Q(s, a*) - mean over actions of Q(s, a) (dueling Q-network)",
}
_MEANINGS = {
    "policy": {
        "value": "value = V(s), the value function's estimate",
    },
    "q": {
        "action": "action = Q(s, a*), the greedy action's Q-value",
        "value": "value = max over actions of Q(s, a)",
    },
    "sac": {
        "logp": "logp = log-probability of the action taken, under the squashed Gaussian",
        "value": "value = min(Q1, Q2) at the squashed greedy action, held fixed",
    },
}


def describe_target(target: str, model_kind: str | None = None, action_space: gym.Space | None = None) -> str:
    """What ``target``'s number is, in words (a chart's subtitle): for a model of ``model_kind``
    (``"policy"``: action-distribution inputs, ``"q"``: a Q-network, ``"sac"``) and
    ``action_space`` where they are known, else every kind's meaning."""
    known = _MEANINGS.get(model_kind or "", {})
    if target in known:
        return known[target]
    match = re.fullmatch(r"action(?:_(\d+))?", target)
    if match is None:
        return _GENERIC_MEANINGS.get(target, target)
    k = int(match.group(1) or 0)
    discrete = isinstance(action_space, gym.spaces.Discrete)
    if model_kind == "q":  # (Discrete actions: RLlib's DQN)
        return f"{target} = Q(s, {k}), the Q-value of action {k}"
    if model_kind in ("policy", "sac") and action_space is not None:
        if isinstance(action_space, gym.spaces.Box):
            squashing = ", before squashing" if model_kind == "sac" else ""
            return f"{target} = the Gaussian mean of action dimension {k}{squashing}"
        if discrete and match.group(1) is None:
            return "action = the greedy action's logit"
        if discrete:
            return f"{target} = the logit of action {k}"
        if isinstance(action_space, gym.spaces.MultiDiscrete):
            return f"{target} = the logit of sub-action {k}'s greedy choice"
    if match.group(1) is None:
        return _GENERIC_MEANINGS["action"]
    return f"{target} = output {k} of the action distribution (logit of action {k}, or Gaussian mean)"
