"""The per-step data of a saliency movie: both heads' maps, value, action probabilities, rewards.

For every step of a recorded episode: the map of the actor (the taken action's
logit; Box actions: the mean of action dimension 0) and of the critic (the value
output), both from :func:`rllib_saliency.explain` with the same method and
options, the value, the action probabilities (Discrete actions; otherwise the
action distribution's inputs), the action and the reward. ``save_npz`` writes it
all (``episode_{k}.npz``); the GIF and the HTML page are drawn from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rllib_saliency.movie.rollout import EpisodeRecord

# The two maps' names (see MovieData.map_labels).
POLICY_LABELS = ("actor", "critic")
Q_NETWORK_LABELS = ("Q(s,a)", "max Q")


@dataclass
class MovieData:
    """One episode's per-step data (``T`` steps)."""

    observations: np.ndarray  # (T, *obs_shape)
    actions: np.ndarray  # (T, ...)
    rewards: np.ndarray  # (T,)
    actor: np.ndarray  # (T, *obs_shape) attribution of the actor target
    critic: np.ndarray | None  # (T, *obs_shape) attribution of the value; None: no value head
    values: np.ndarray | None  # (T,) the value output
    actor_values: np.ndarray  # (T,) the explained actor output (the taken action's logit)
    action_outputs: np.ndarray  # (T, K) probabilities (Discrete) or distribution inputs
    action_output_kind: str  # "probability", "q_value" (Q-networks) or "dist_input"
    frames: np.ndarray | None  # (T, H, W, 3) uint8 renderings of the env (vector observations)
    feature_names: list[str]
    action_names: list[str]
    method: str
    policy_id: str
    checkpoint: str
    options: dict[str, Any] = field(default_factory=dict)
    truncated_by_max_steps: bool = False
    # The two maps' names on the GIF and the page: a policy's actor and critic; a Q-network's
    # "actor" map is the taken action's Q-value and its "critic" map max_a Q.
    map_labels: tuple[str, str] = POLICY_LABELS

    def __len__(self) -> int:
        return len(self.observations)

    @property
    def is_image(self) -> bool:
        return self.observations.ndim == 4

    @property
    def episode_return(self) -> float:
        return float(np.sum(self.rewards))

    def bookmarks(self, count: int = 5) -> list[int]:
        """The steps where the value changes most (``|V(t) - V(t-1)|``), in step order."""
        if self.values is None or len(self.values) < 2:
            return []
        change = np.abs(np.diff(self.values.astype(np.float64)))
        change = np.where(np.isfinite(change), change, -1.0)
        order = np.argsort(-change, kind="stable")[: min(count, len(change))]
        return sorted(int(k) + 1 for k in order if change[k] > 0)

    def save_npz(self, path: str) -> None:
        """Everything per step, and what it was computed with. Image observations: observations
        that are whole numbers in [0, 255] (Atari frames) are stored as uint8 and the maps as
        float16, which keeps a 1,000-step Atari episode's file tens of megabytes, not hundreds."""
        observations, maps = self.observations, np.float32
        if self.is_image:
            maps = np.float16
            whole = np.isfinite(observations).all() and observations.min() >= 0 and observations.max() <= 255
            if whole and np.array_equal(observations, np.round(observations)):
                observations = observations.astype(np.uint8)
        np.savez_compressed(
            path,
            observations=observations,
            actions=self.actions,
            rewards=self.rewards,
            actor_attributions=self.actor.astype(maps),
            **({"critic_attributions": self.critic.astype(maps)} if self.critic is not None else {}),
            **({"values": self.values} if self.values is not None else {}),
            actor_values=self.actor_values,
            action_outputs=self.action_outputs,
            action_output_kind=np.asarray(self.action_output_kind),
            **({"frames": self.frames} if self.frames is not None else {}),
            bookmarks=np.asarray(self.bookmarks(), np.int64),
            feature_names=np.asarray(self.feature_names),
            action_names=np.asarray(self.action_names),
            method=np.asarray(self.method),
            options=np.asarray(json.dumps({k: repr(v) for k, v in self.options.items()})),
            policy_id=np.asarray(self.policy_id),
            checkpoint=np.asarray(self.checkpoint),
            map_labels=np.asarray(self.map_labels),
        )


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def compute_movie_data(
    policy: Any,
    record: EpisodeRecord,
    method: str,
    options: dict[str, Any],
    *,
    policy_id: str,
    checkpoint: str,
    feature_names: list[str] | None = None,
    batch_size: int = 256,
) -> tuple[MovieData, list[str]]:
    """Both heads' attributions at every step of ``record``; returns the data and notes for the user.

    Raises ValueError (with a user-facing message) for options the method rejects.
    """
    import gymnasium as gym

    from rllib_saliency.backends import backend_for
    from rllib_saliency.engine import explain
    from rllib_saliency.summaries import feature_layout
    from rllib_saliency.targets import ResolvedTarget

    notes: list[str] = []
    obs = record.observations.astype(np.float32)
    states = record.states or None
    backend = backend_for(policy)
    backend.sync_weights()
    outputs = [
        backend.forward(obs[i : i + batch_size], tuple(s[i : i + batch_size] for s in record.states))
        for i in range(0, len(obs), batch_size)
    ]
    dist_inputs = np.concatenate([o.dist_inputs for o in outputs]).astype(np.float32)
    space = policy.action_space
    if isinstance(space, gym.spaces.Discrete):
        n = int(space.n)
        # A Q-network's outputs are Q-values, not logits: shown as they are.
        q_network = getattr(backend, "outputs_q_values", False)
        action_outputs, kind = (
            (dist_inputs[:, :n], "q_value")
            if q_network
            else (_softmax(dist_inputs[:, :n].astype(np.float64)).astype(np.float32), "probability")
        )
        action_names = [f"a{k}" for k in range(n)]
        # The taken action's logit (greedy rollouts: the greedy one).
        taken = np.asarray(record.actions).reshape(-1).astype(np.int32)
        actor = explain(
            policy,
            obs,
            method,
            "action",
            state=states,
            batch_size=batch_size,
            resolved_target=ResolvedTarget("dist_input", columns=taken, states=record.states),
            **options,
        )
    else:
        action_outputs, kind = dist_inputs, "dist_input"
        action_names = [f"out{k}" for k in range(dist_inputs.shape[1])]
        actor = explain(policy, obs, method, "action", state=states, batch_size=batch_size, **options)
    critic = values = None
    try:
        value_attribution = explain(
            policy, obs, method, "value", state=states, batch_size=batch_size, **options
        )
    except ValueError as error:
        if "value" not in str(error).lower():
            raise
        notes.append(f"no critic map: {error}")
    else:
        critic, values = value_attribution.values, value_attribution.target_values
    if feature_names is None:
        feature_names = feature_layout(policy.observation_space).names
    return (
        MovieData(
            observations=obs,
            actions=np.asarray(record.actions),
            rewards=record.rewards,
            actor=actor.values,
            critic=critic,
            values=values,
            actor_values=actor.target_values,
            action_outputs=action_outputs,
            action_output_kind=kind,
            frames=record.frames,
            feature_names=list(feature_names),
            action_names=action_names,
            method=method,
            policy_id=policy_id,
            checkpoint=checkpoint,
            options=dict(actor.options),
            truncated_by_max_steps=record.truncated_by_max_steps,
            map_labels=Q_NETWORK_LABELS if kind == "q_value" else POLICY_LABELS,
        ),
        notes,
    )
