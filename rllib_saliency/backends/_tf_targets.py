"""TensorFlow code shared by the graph and eager backends: target tensors, and
rebuilding a policy's model."""

from __future__ import annotations

from typing import Any

import tensorflow as tf


def target_tensor(
    kind: str,
    dist_inputs: tf.Tensor,
    model: Any,
    dist_class: type,
    selection: tf.Tensor | None,
) -> tf.Tensor:
    """The per-sample scalar a backend differentiates, shape ``(N,)``.

    ``selection`` holds the columns (kind ``dist_input``) or the actions (kind
    ``logp``). ``logp`` goes through the policy's own distribution class, so it
    includes what the policy does after the network.
    """
    if kind == "dist_input":
        depth = tf.shape(dist_inputs)[1]
        return tf.reduce_sum(dist_inputs * tf.one_hot(selection, depth, dtype=dist_inputs.dtype), axis=1)
    if kind == "logp":
        return dist_class(dist_inputs, model).logp(selection)
    if kind == "value":
        return tf.reshape(model.value_function(), [-1])
    raise ValueError(f"unknown target kind {kind!r}")


def refuse_advantage(kind: str, policy_id: str) -> None:
    """Target 'advantage' (a dueling Q-network's, new API stack) is not built for TF policies."""
    if kind == "advantage":
        from rllib_saliency.errors import UnsupportedTarget

        raise UnsupportedTarget(
            f"target 'advantage': policy {policy_id!r} is an old-API-stack TF policy; the advantage "
            "target is explained for torch Q-network modules (RLlib's new API stack DQN with dueling "
            "heads). TF policies support 'action', 'action_K', 'logp' and 'value'."
        )


def value_function_error(policy_id: str, error: Exception) -> ValueError:
    return ValueError(
        f"target 'value' needs a value function, but the model of policy "
        f"{policy_id!r} has none ({type(error).__name__}: {error}); use "
        "target='action', 'action_K' or 'logp'."
    )


def rebuild_model(policy: Any, framework: str, name: str) -> Any:
    """A new model built the way RLlib built the policy's (same catalog, config and kwargs)."""
    from ray.rllib.models import ModelCatalog

    return ModelCatalog.get_model_v2(
        policy.observation_space,
        policy.action_space,
        policy.model.num_outputs,
        policy.config["model"],
        framework=framework,
        name=name,
    )
