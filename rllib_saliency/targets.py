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

TARGET_NAMES = ("action", "action_K", "logp", "value")

TargetKind = Literal["greedy_logit", "dist_input", "logp", "value"]


@dataclass(frozen=True)
class TargetSpec:
    """A parsed target name. ``column`` is set for ``dist_input``."""

    name: str
    kind: TargetKind
    column: int | None = None


@dataclass(frozen=True)
class ResolvedTarget:
    """A target with its per-sample choices fixed, as a backend evaluates it.

    kind ``dist_input``: ``columns[i]`` is the column of the model output
    (logit or Gaussian mean) explained for sample ``i``.
    kind ``logp``: ``actions[i]`` is the action whose log-probability is explained.
    kind ``value``: the value-function output; no per-sample choice.
    """

    kind: Literal["dist_input", "logp", "value"]
    columns: np.ndarray | None = None
    actions: np.ndarray | None = None

    def take(self, rows: np.ndarray | slice) -> ResolvedTarget:
        """The same target restricted to some rows of the batch."""
        return ResolvedTarget(
            self.kind,
            None if self.columns is None else self.columns[rows],
            None if self.actions is None else self.actions[rows],
        )


def action_dimensions(action_space: gym.Space) -> int:
    """How many ``action_K`` targets the action space has (logits or Gaussian means)."""
    if isinstance(action_space, gym.spaces.Discrete):
        return int(action_space.n)
    if isinstance(action_space, gym.spaces.Box):
        return int(np.prod(action_space.shape))
    raise ValueError(
        f"target 'action'/'action_K' supports Discrete and Box action spaces, "
        f"not {action_space}; use target='logp' or target='value' for this policy."
    )


def parse_target(name: str, action_space: gym.Space) -> TargetSpec:
    """Parse a target name against an action space; ValueError names the valid ones."""
    if not isinstance(name, str):
        raise ValueError(f"target must be a string, one of {TARGET_NAMES}; got {name!r}")
    if name == "logp":
        return TargetSpec(name, "logp")
    if name == "value":
        return TargetSpec(name, "value")
    if name == "action":
        if isinstance(action_space, gym.spaces.Discrete):
            return TargetSpec(name, "greedy_logit")
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
        return TargetSpec(name, "dist_input", column)
    raise ValueError(
        f"unknown target {name!r}; valid targets are 'action', 'action_K' "
        "(K an action index or dimension), 'logp' and 'value'."
    )


def needs_forward(spec: TargetSpec, actions: np.ndarray | None) -> bool:
    """Whether resolving ``spec`` needs the policy's outputs (greedy action) first."""
    return spec.kind == "greedy_logit" or (spec.kind == "logp" and actions is None)


def resolve_target(
    spec: TargetSpec,
    n: int,
    dist_inputs: np.ndarray | None,
    greedy_actions: np.ndarray | None,
    actions: np.ndarray | None,
) -> ResolvedTarget:
    """Fix per-sample choices from the policy's outputs at the original observations.

    ``dist_inputs`` and ``greedy_actions`` are only read when
    :func:`needs_forward` says so.
    """
    if spec.kind == "greedy_logit":
        return ResolvedTarget("dist_input", columns=np.argmax(dist_inputs, axis=1).astype(np.int32))
    if spec.kind == "dist_input":
        return ResolvedTarget("dist_input", columns=np.full(n, spec.column, dtype=np.int32))
    if spec.kind == "logp":
        return ResolvedTarget("logp", actions=greedy_actions if actions is None else actions)
    return ResolvedTarget("value")
