"""Execution backends, one per way a policy runs its model; chosen by :func:`backend_for`."""

from __future__ import annotations

import weakref
from typing import Any

from rllib_saliency.backends.base import Backend, ModelOutputs, TargetFunction
from rllib_saliency.recurrent import PREVIOUS_ACTION_OPTIONS

__all__ = [
    "Backend",
    "ModelOutputs",
    "TargetFunction",
    "backend_for",
    "check_supported",
    "policy_id_of",
    "policy_mode",
]

SUPPORTED = (
    "RLlib old-API-stack TensorFlow policies: framework 'tf' (graph + session, "
    "e.g. PPOTF1Policy) or 'tf2' (eager, traced or not, e.g. PPOTF2Policy)"
)

# One backend per policy, built on first use and kept as long as the policy lives.
_backends: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def policy_id_of(policy: Any) -> str:
    config = getattr(policy, "config", None)
    policy_id = config.get("__policy_id") if isinstance(config, dict) else None
    return str(policy_id or "default_policy")


def policy_mode(policy: Any) -> str | None:
    """``"graph"``, ``"eager"``, or None when the policy is not a supported TF policy."""
    from ray.rllib.policy.eager_tf_policy import EagerTFPolicy
    from ray.rllib.policy.eager_tf_policy_v2 import EagerTFPolicyV2
    from ray.rllib.policy.tf_policy import TFPolicy

    if isinstance(policy, TFPolicy):
        return "graph"
    if isinstance(policy, (EagerTFPolicyV2, EagerTFPolicy)):
        return "eager"
    return None


def check_supported(policy: Any) -> str:
    """The policy's mode (``"graph"``/``"eager"``); TypeError saying why it is not supported."""
    mode = policy_mode(policy)
    if mode is None:
        framework = getattr(policy, "framework", None)
        raise TypeError(
            f"explain() supports {SUPPORTED}; got {type(policy).__name__}"
            + (f" (framework {framework!r})" if framework else "")
            + ". Build the algorithm with config.framework('tf') or ('tf2') on the "
            "old API stack: config.api_stack(enable_rl_module_and_learner=False, "
            "enable_env_runner_and_connector_v2=False)."
        )
    model_config = policy.config.get("model", {})
    previous = [name for name in PREVIOUS_ACTION_OPTIONS if model_config.get(name)]
    if previous:
        raise TypeError(
            f"policy {policy_id_of(policy)!r} feeds previous actions/rewards into its model "
            f"({', '.join(f'{name}={model_config[name]!r}' for name in previous)}); explain() feeds "
            "observations and recurrent states only. Train without these options to explain the policy."
        )
    return mode


def backend_for(policy: Any) -> Backend:
    """The cached backend for ``policy``; TypeError for anything but a supported TF policy."""
    mode = check_supported(policy)
    backend = _backends.get(policy)
    if backend is None:
        if mode == "graph":
            from rllib_saliency.backends.tf_graph import TFGraphBackend

            backend = TFGraphBackend(policy, policy_id_of(policy))
        else:
            from rllib_saliency.backends.tf_eager import TFEagerBackend

            backend = TFEagerBackend(policy, policy_id_of(policy))
        _backends[policy] = backend
    return backend
