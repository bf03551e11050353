r"""What both stacks' rollout loops share: the episodes they played and the rows they give.

``stacks/old/rollout.py`` plays an old-API-stack policy, ``stacks/new/rollout.py`` a
new-API-stack module through the checkpoint's connectors; both hand back
:class:`PlayedEpisode`\ s and :class:`Rollouts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rllib_saliency.errors import CLIError


@dataclass
class Rollouts:
    observations: np.ndarray
    actions: np.ndarray
    episode_ids: np.ndarray
    episodes: int
    states: tuple[np.ndarray, ...] = ()  # recurrent models: the state each step was taken in
    # Multi-agent rollouts of the new API stack: the agent each row belongs to (as str).
    agent_ids: np.ndarray | None = None


def collect(
    observations: list[np.ndarray],
    actions: list[np.ndarray],
    episode_ids: list[np.ndarray],
    episodes: int,
    policy_id: str,
    states: list[list[np.ndarray]],
) -> Rollouts:
    if not observations or sum(len(o) for o in observations) == 0:
        raise CLIError(f"policy {policy_id!r} did not act in the {episodes} episode(s) rolled out.")
    return Rollouts(
        np.concatenate(observations).astype(np.float32),
        np.concatenate(actions),
        np.concatenate(episode_ids),
        episodes,
        tuple(np.concatenate(parts) for parts in zip(*states, strict=True)),
    )


@dataclass
class PlayedEpisode:
    """One greedy episode as a rollout loop played it (both stacks' single-agent loops)."""

    observations: list[np.ndarray] = field(default_factory=list)  # what the policy/module saw
    actions: list[Any] = field(default_factory=list)  # the policy's/module's (before unsquashing)
    rewards: list[float] = field(default_factory=list)
    states: list[list[np.ndarray]] = field(default_factory=list)  # recurrent: the state per step
    cut: bool = False  # stopped after ``max_steps`` steps, before the episode ended

    def __len__(self) -> int:
        return len(self.observations)


def from_played(played: list[PlayedEpisode], policy_id: str) -> Rollouts:
    """Whole played episodes (either stack's loop) as :class:`Rollouts`, episode ``k``'s rows
    with episode id ``k``."""
    observations = [row for episode in played for row in episode.observations]
    actions = [np.asarray(action) for episode in played for action in episode.actions]
    states = [state for episode in played for state in episode.states]
    return collect(
        [np.stack(observations)] if observations else [],
        [np.stack(actions)] if actions else [],
        [np.repeat(np.arange(len(played), dtype=np.int64), [len(episode) for episode in played])],
        len(played),
        policy_id,
        [[np.stack(leaf) for leaf in zip(*states, strict=True)]] if states else [],
    )
