"""Backend for eager ("tf2") RLlib policies: the policy's own model under ``tf.function``.

One ``tf.function`` per target kind, with an input signature whose batch
dimension is ``None``, so varying batch sizes reuse one trace. ``trace_count``
counts traces (tests check it stays bounded).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from rllib_saliency.backends._tf_targets import refuse_advantage, target_tensor, value_function_error
from rllib_saliency.backends.base import ModelOutputs, check_state_count
from rllib_saliency.recurrent import recurrent_layout
from rllib_saliency.targets import ResolvedTarget

logger = logging.getLogger("rllib_saliency")


def untracked_variables(model: Any) -> tuple[int, int]:
    """``(missing, total)``: variables of the model's Keras parts that ``model.variables()`` misses.

    RLlib's ``TFModelV2.variables()`` keys variables by name. In eager mode
    names are not made unique, so unnamed weights of one layer (RLlib's own
    GTrXL: the GRU gates' and attention's ``add_weight`` calls) collide and
    all but one drop out: they are then neither trained, nor synced to env
    runners, nor saved in checkpoints.
    """
    listed = {id(v) for v in model.variables()}
    found: dict[int, Any] = {}
    stack = [model.__dict__]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, tf.Module):
            found.update((id(v), v) for v in item.variables)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif hasattr(item, "variables") and hasattr(item, "__dict__") and callable(item.variables):
            stack.append(item.__dict__)  # a nested ModelV2
    found.update((id(v), v) for v in model.variables())
    return len(set(found) - listed), len(found)


def _warn_untracked_variables(model: Any, policy_id: str) -> None:
    try:
        missing, total = untracked_variables(model)
    except Exception as error:  # noqa: BLE001 - a diagnostic must not stop explaining
        logger.debug("could not count the variables of policy %r: %s", policy_id, error)
        return
    if missing:
        logger.warning(
            "policy %r: RLlib's model.variables() misses %d of the model's %d variables (their names "
            "collide in eager mode), so RLlib neither trains them nor saves them in checkpoints nor "
            "syncs them to env runners. Saliency explains the model as it runs in this process; a "
            "restored checkpoint of it gives different outputs. framework('tf') does not have this "
            "problem.",
            policy_id,
            missing,
            total,
        )


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
        # (and the previous actions/rewards, if the model is fed them).
        self._layout = recurrent_layout(policy)
        self._state_specs = tuple(
            tf.TensorSpec((None, *i.shape), tf.as_dtype(i.dtype)) for i in self._layout.inputs
        )
        # Concrete functions, each traced once on first use: calling one skips tf.function's
        # per-call signature matching, which cost about as much as the model itself at N=64.
        self._forward: Callable | None = None
        self._functions: dict[tuple[str, bool], Callable] = {}
        if model is None:
            _warn_untracked_variables(policy.model, policy_id)

    def _run_model(self, obs: tf.Tensor, inputs: tuple[tf.Tensor, ...]) -> tuple[tf.Tensor, list]:
        states, previous = self._layout.split(inputs)
        seq_lens = tf.ones(tf.shape(obs)[:1], tf.int32) if states else None
        return self._model({"obs": obs, "is_training": False, **previous}, states, seq_lens)

    def _forward_impl(self, obs: tf.Tensor, states: tuple[tf.Tensor, ...]) -> tuple:
        self.trace_count += 1
        dist_inputs, state_outs = self._run_model(obs, states)
        greedy = self._policy.dist_class(dist_inputs, self._model).deterministic_sample()
        return dist_inputs, greedy, tuple(state_outs)

    def _check_states(self, states: tuple[np.ndarray, ...]) -> tuple:
        check_state_count(self._policy_id, len(self._state_specs), states)
        return tuple(
            tf.convert_to_tensor(s, spec.dtype) for s, spec in zip(states, self._state_specs, strict=True)
        )

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
                        kind, self._run_model(obs, states)[0], self._model, self._policy.dist_class, selection
                    )
                if not with_gradient:
                    return values, tf.zeros((0,), tf.float32)
                gradient = tape.gradient(values, obs)
                return values, tf.zeros_like(obs) if gradient is None else gradient

            self._functions[key] = tf.function(
                evaluate, input_signature=[self._obs_spec, self._selection_specs[kind], self._state_specs]
            ).get_concrete_function()
        return self._functions[key]

    def sync_weights(self) -> None:
        """Nothing to do: the policy's own model (and its current weights) is used."""

    def forward(self, obs: np.ndarray, states: tuple[np.ndarray, ...] = ()) -> ModelOutputs:
        if self._forward is None:
            self._forward = tf.function(
                self._forward_impl, input_signature=[self._obs_spec, self._state_specs]
            ).get_concrete_function()
        dist_inputs, greedy, state_outs = self._forward(
            tf.convert_to_tensor(obs, tf.float32), self._check_states(states)
        )
        return ModelOutputs(dist_inputs.numpy(), greedy.numpy(), tuple(s.numpy() for s in state_outs))

    def evaluate(
        self, obs: np.ndarray, target: ResolvedTarget, with_gradient: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        refuse_advantage(target.kind, self._policy_id)
        if target.kind == "dist_input":
            selection = target.columns
        elif target.kind == "logp":
            selection = target.actions
        else:
            selection = np.zeros(len(obs), np.int32)
        try:
            function = self._function(target.kind, with_gradient)
            values, gradient = function(
                tf.convert_to_tensor(obs, tf.float32),
                tf.convert_to_tensor(selection, self._selection_specs[target.kind].dtype),
                self._check_states(target.states),
            )
        except (NotImplementedError, AttributeError) as error:
            if target.kind == "value":
                raise value_function_error(self._policy_id, error) from error
            raise
        return values.numpy(), (gradient.numpy() if with_gradient else None)
