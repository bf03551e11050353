"""Backend for eager ("tf2") RLlib policies: the policy's own model under ``tf.function``.

One ``tf.function`` per target kind, with an input signature whose batch
dimension is ``None``, so varying batch sizes reuse one trace. ``trace_count``
counts traces (tests check it stays bounded).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from rllib_saliency.backends._tf_targets import target_tensor, value_function_error
from rllib_saliency.backends.base import ModelOutputs
from rllib_saliency.targets import ResolvedTarget


class TFEagerBackend:
    """Evaluates targets and input gradients of an eager policy with its own model."""

    def __init__(self, policy: Any, policy_id: str, model: Any = None) -> None:
        """``model``: run this model (same architecture) instead of the policy's own."""
        self._policy = policy
        self._policy_id = policy_id
        self._model = policy.model if model is None else model
        self.trace_count = 0
        self._obs_spec = tf.TensorSpec((None, *policy.observation_space.shape), tf.float32)
        space = policy.action_space
        self._selection_specs = {
            "dist_input": tf.TensorSpec((None,), tf.int32),
            "logp": tf.TensorSpec((None, *space.shape), tf.as_dtype(space.dtype)),
            "value": tf.TensorSpec((None,), tf.int32),  # unused placeholder input
        }
        # Recurrent models: one step per sample, from the state given for that sample.
        self._state_specs = tuple(
            tf.TensorSpec((None, *np.shape(s)), tf.float32) for s in policy.get_initial_state()
        )
        self._forward = tf.function(self._forward_impl, input_signature=[self._obs_spec, self._state_specs])
        self._functions: dict[tuple[str, bool], Callable] = {}

    def _dist_inputs(self, obs: tf.Tensor, states: tuple[tf.Tensor, ...]) -> tf.Tensor:
        seq_lens = tf.ones(tf.shape(obs)[:1], tf.int32) if states else None
        dist_inputs, _ = self._model({"obs": obs, "is_training": False}, list(states), seq_lens)
        return dist_inputs

    def _forward_impl(self, obs: tf.Tensor, states: tuple[tf.Tensor, ...]) -> tuple[tf.Tensor, tf.Tensor]:
        self.trace_count += 1
        dist_inputs = self._dist_inputs(obs, states)
        return dist_inputs, self._policy.dist_class(dist_inputs, self._model).deterministic_sample()

    def _check_states(self, states: tuple[np.ndarray, ...]) -> tuple:
        if len(states) != len(self._state_specs):
            raise ValueError(
                f"policy {self._policy_id!r} has {len(self._state_specs)} recurrent state inputs; "
                f"got {len(states)} state arrays."
            )
        return tuple(tf.convert_to_tensor(s, tf.float32) for s in states)

    def _function(self, kind: str, with_gradient: bool) -> Callable:
        key = (kind, with_gradient)
        if key not in self._functions:

            def evaluate(
                obs: tf.Tensor, selection: tf.Tensor, states: tuple[tf.Tensor, ...]
            ) -> tuple[tf.Tensor, tf.Tensor]:
                self.trace_count += 1
                # Every op between obs and the target must run inside the tape.
                with tf.GradientTape(watch_accessed_variables=False) as tape:
                    tape.watch(obs)
                    values = target_tensor(
                        kind, self._dist_inputs(obs, states), self._model, self._policy.dist_class, selection
                    )
                if not with_gradient:
                    return values, tf.zeros((0,), tf.float32)
                gradient = tape.gradient(values, obs)
                return values, tf.zeros_like(obs) if gradient is None else gradient

            self._functions[key] = tf.function(
                evaluate, input_signature=[self._obs_spec, self._selection_specs[kind], self._state_specs]
            )
        return self._functions[key]

    def sync_weights(self) -> None:
        """Nothing to do: the policy's own model (and its current weights) is used."""

    def forward(self, obs: np.ndarray, states: tuple[np.ndarray, ...] = ()) -> ModelOutputs:
        dist_inputs, greedy = self._forward(tf.convert_to_tensor(obs, tf.float32), self._check_states(states))
        return ModelOutputs(dist_inputs.numpy(), greedy.numpy())

    def evaluate(
        self, obs: np.ndarray, target: ResolvedTarget, with_gradient: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        if target.kind == "dist_input":
            selection = target.columns
        elif target.kind == "logp":
            selection = target.actions
        else:
            selection = np.zeros(len(obs), np.int32)
        try:
            values, gradient = self._function(target.kind, with_gradient)(
                tf.convert_to_tensor(obs, tf.float32), selection, self._check_states(target.states)
            )
        except (NotImplementedError, AttributeError) as error:
            if target.kind == "value":
                raise value_function_error(self._policy_id, error) from error
            raise
        return values.numpy(), (gradient.numpy() if with_gradient else None)
