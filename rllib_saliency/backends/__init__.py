"""Execution backends, one per way a policy runs its model; chosen by :func:`backend_for`."""

from __future__ import annotations

import sys
import weakref
from typing import Any

from rllib_saliency.backends.base import Backend, ModelOutputs, TargetFunction
from rllib_saliency.errors import UnsupportedModel
from rllib_saliency.recurrent import PREVIOUS_INPUTS

__all__ = [
    "Backend",
    "ModelOutputs",
    "TargetFunction",
    "backend_for",
    "check_supported",
    "model_kind",
    "policy_id_of",
    "policy_mode",
]

SUPPORTED = (
    "RLlib new-API-stack torch RLModules (e.g. algo.get_module(module_id), or the learner's module for "
    "target 'value'), and old-API-stack TensorFlow policies: framework 'tf' (graph + session, "
    "e.g. PPOTF1Policy) or 'tf2' (eager, traced or not, e.g. PPOTF2Policy)"
)

# One backend per policy, built on first use and kept as long as the policy lives.
_backends: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def is_torch_module(model: Any) -> bool:
    """A torch RLModule (new API stack). Imports nothing: a module exists only if torch was imported."""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(model, torch.nn.Module):
        return False
    from ray.rllib.core.rl_module.rl_module import RLModule

    return isinstance(model, RLModule)


def is_multi_module(model: Any) -> bool:
    module = sys.modules.get("ray.rllib.core.rl_module.multi_rl_module")
    return module is not None and isinstance(model, module.MultiRLModule)


def policy_id_of(policy: Any) -> str:
    if is_torch_module(policy):
        return "default_policy"  # RLlib's DEFAULT_MODULE_ID; an RLModule does not know its id
    config = getattr(policy, "config", None)
    policy_id = config.get("__policy_id") if isinstance(config, dict) else None
    return str(policy_id or "default_policy")


def policy_mode(policy: Any) -> str | None:
    """``"torch"``, ``"graph"``, ``"eager"``, or None when it is neither a torch RLModule nor a TF policy."""
    if is_torch_module(policy):
        return "torch"
    from ray.rllib.policy.eager_tf_policy import EagerTFPolicy
    from ray.rllib.policy.eager_tf_policy_v2 import EagerTFPolicyV2
    from ray.rllib.policy.tf_policy import TFPolicy

    if isinstance(policy, TFPolicy):
        return "graph"
    if isinstance(policy, (EagerTFPolicyV2, EagerTFPolicy)):
        return "eager"
    return None


# The model options that make RLlib's attention net read such windows.
WINDOW_OPTIONS = ("attention_use_n_prev_actions", "attention_use_n_prev_rewards")


def previous_input_windows(model: Any) -> list[str]:
    """``prev_actions``/``prev_rewards`` inputs the model reads as a window of n steps."""
    requirements = getattr(model, "view_requirements", None) or {}
    return [
        f"{name} {requirements[name].shift!r}"
        for name in PREVIOUS_INPUTS
        if name in requirements and requirements[name].shift_from is not None
    ]


def unfed_model_inputs(model: Any) -> list[str]:
    """Batch columns the model's forward pass reads that the backends do not feed."""
    fed = ("obs", *PREVIOUS_INPUTS)
    return sorted(
        name
        for name, requirement in (getattr(model, "view_requirements", None) or {}).items()
        if getattr(requirement, "used_for_compute_actions", True)
        and name not in fed
        and not name.startswith(("state_in_", "state_out_"))
    )


def check_supported(policy: Any) -> str:
    """The policy's mode (``"graph"``/``"eager"``); TypeError saying why it is not supported."""
    mode = policy_mode(policy)
    if mode == "torch":
        return _check_torch_module(policy)
    if mode is None and is_multi_module(policy):
        raise UnsupportedModel(
            f"got a MultiRLModule with modules {sorted(policy.keys())}; pass one of them, "
            "e.g. multi_module[module_id] (or algo.get_module(module_id))."
        )
    if mode is None:
        framework = getattr(policy, "framework", None)
        fix = (
            "For torch, train on RLlib's new API stack (the default: no .api_stack(...)) and pass the "
            "RLModule."
            if framework == "torch"
            else "Pass algo.get_module(module_id) (new API stack) or algo.get_policy(policy_id) of an "
            "algorithm built with config.framework('tf') or ('tf2') on the old API stack."
        )
        raise UnsupportedModel(
            f"explain() supports {SUPPORTED}; got {type(policy).__name__}"
            + (f" (framework {framework!r})" if framework else "")
            + f". {fix}"
        )
    windows = previous_input_windows(policy.model)
    if windows:
        # RLlib's inference view of a "-n:-1" action/reward window is one step older than
        # the batch column it records (measured with attention_use_n_prev_actions).
        model_config = policy.config.get("model", {})
        options = [f"{name}={model_config[name]!r}" for name in WINDOW_OPTIONS if model_config.get(name)]
        raise UnsupportedModel(
            f"policy {policy_id_of(policy)!r} feeds its model the last n actions/rewards "
            f"({', '.join(options or windows)}). RLlib 2.60 acts on a window one step older than the "
            "one its sample batches record, so a sampled step's inputs cannot be rebuilt faithfully. "
            "Supported: attention nets without attention_use_n_prev_actions/rewards, and LSTMs with "
            "lstm_use_prev_action/lstm_use_prev_reward."
        )
    from rllib_saliency.frameworks import ensure_legacy_keras

    ensure_legacy_keras()
    unfed = unfed_model_inputs(policy.model)
    if unfed:
        raise UnsupportedModel(
            f"policy {policy_id_of(policy)!r}: its model reads {unfed} from the sample batch (trajectory "
            "view requirements), which explain() does not feed; it feeds the observation, recurrent "
            "states and previous actions/rewards."
        )
    return mode


def _check_torch_module(module: Any) -> str:
    from gymnasium import spaces

    if not isinstance(module.observation_space, spaces.Box):
        raise UnsupportedModel(
            f"{type(module).__name__} reads {module.observation_space} observations; rllib-saliency "
            "explains modules whose input is one array (a Box space). Flatten Dict/Tuple/Discrete "
            "observations with RLlib's FlattenObservations env-to-module connector, as RLlib's default "
            "encoders need anyway."
        )
    return "torch"


def model_kind(policy: Any) -> str:
    """What the model's action outputs are, for saying what a target means
    (``targets.describe_target``): ``"policy"`` (action-distribution inputs: logits, Gaussian
    means; every TF policy), ``"q"`` (a Q-network's Q-values) or ``"sac"``. Builds no backend."""
    if is_torch_module(policy):
        from rllib_saliency.backends.torch_heads import module_kind

        return module_kind(policy)
    return "policy"


def backend_for(policy: Any) -> Backend:
    """The cached backend for ``policy`` (a torch RLModule or a TF policy); TypeError for anything else."""
    mode = check_supported(policy)
    backend = _backends.get(policy)
    if backend is None:
        if mode == "torch":
            from rllib_saliency.backends.torch import TorchBackend

            backend = TorchBackend(policy, policy_id_of(policy))
        elif mode == "graph":
            from rllib_saliency.backends.tf_graph import TFGraphBackend

            backend = TFGraphBackend(policy, policy_id_of(policy))
        else:
            from rllib_saliency.backends.tf_eager import TFEagerBackend

            backend = TFEagerBackend(policy, policy_id_of(policy))
        _backends[policy] = backend
    return backend
