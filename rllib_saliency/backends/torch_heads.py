"""What each kind of RLlib torch module outputs, and which scalar each target reads from it.

Three kinds of module (:func:`module_kind`):

- ``"policy"``: a forward pass (``_forward``, or the module's own ``_forward_inference``)
  returning ``ACTION_DIST_INPUTS`` (PPO, APPO, IMPALA, BC, MARWIL); ``value`` through RLlib's
  ``ValueFunctionAPI.compute_values``.
- ``"q"``: a Q-network: a module implementing RLlib's Q-network API, ``compute_q_values(batch)``
  returning ``{"qf_preds": (B, num_actions)}`` (RLlib's ``DefaultDQNTorchRLModule``, with or
  without dueling and distributional heads, and custom modules with the same method). Its row of
  Q-values plays the part of the action-distribution inputs: ``action`` = Q(s, a*) for the greedy
  a* = argmax_a Q(s, a), ``action_K`` = Q(s, K), ``value`` = max_a Q(s, a). RLlib's ``qf_preds`` is
  what it acts on (its ``_forward_inference`` takes the argmax of them): for distributional
  heads (``num_atoms > 1``) the expected Q, sum_i z_i p_i(s, a). ``advantage`` (dueling heads only)
  = Q(s, a*) - mean_a Q(s, a): RLlib's ``_qf_forward_helper`` combines the streams as
  Q = V + (A - mean_a A) (``nanmean``, so masked ``-inf`` actions are left out), so the mean of
  Q over the actions is V and this is A(s, a*) - mean_a A(s, a), the advantage stream centred
  as RLlib centres it. ``logp`` is refused: a Q-network defines no action distribution.
- ``"sac"``: RLlib's SAC module (``DefaultSACTorchRLModule``, also CQL's): a Gaussian policy
  (``action``/``action_K`` = its means before squashing, ``logp`` under its squashed Gaussian)
  and twin Q-networks. ``value`` = min(Q1, Q2)(s, a) (RLlib's ``compute_q_values``), with ``a``
  held fixed: the squashed mean at the explained observation (see :func:`squashed_mean`) or
  the actions passed, so the gradient is w.r.t. the observation only, not through the policy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ray.rllib.core.columns import Columns

from rllib_saliency.errors import UnsupportedModel, UnsupportedTarget

# RLlib's DQN output key (ray.rllib.algorithms.dqn.default_dqn_rl_module.QF_PREDS), kept here
# so that importing this module does not import RLlib's DQN package.
QF_PREDS = "qf_preds"

Q_TARGETS = "'action' (Q(s, a*) at the greedy a*), 'action_K' (Q(s, K)) and 'value' (max_a Q(s, a))"


def is_sac_module(module: Any) -> bool:
    """RLlib's SAC module (or a subclass): a policy head plus twin Q-networks on (obs, action)."""
    try:
        from ray.rllib.algorithms.sac.torch.default_sac_torch_rl_module import DefaultSACTorchRLModule
    except ImportError:  # an RLlib without SAC: no module is one
        return False
    return isinstance(module, DefaultSACTorchRLModule)


def module_kind(module: Any) -> str:
    """``"sac"``, ``"q"`` (a Q-network: ``compute_q_values`` and no SAC policy) or ``"policy"``."""
    if is_sac_module(module):
        return "sac"
    if callable(getattr(module, "compute_q_values", None)):
        return "q"
    return "policy"


def describe(module: Any, module_id: str) -> str:
    return f"module {module_id!r} ({type(module).__name__})"


def q_values(module: Any, module_id: str, batch: dict[str, Any]) -> torch.Tensor:
    """The Q-values RLlib acts on, shape (B, num_actions): ``compute_q_values(batch)["qf_preds"]``."""
    outputs = module.compute_q_values(batch)
    if not isinstance(outputs, dict) or QF_PREDS not in outputs:
        got = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
        raise UnsupportedModel(
            f"{describe(module, module_id)}: its compute_q_values returns {got}, not a dict with "
            f"{QF_PREDS!r} (one Q-value per action), as RLlib's Q-network API (DQN) does."
        )
    return outputs[QF_PREDS]


def advantage_error(module: Any, module_id: str) -> UnsupportedTarget | None:
    """Why a Q-module has no ``advantage`` target, or None if it has one (dueling, expectation Q)."""
    if not getattr(module, "uses_dueling", False):
        why = "has no dueling head (uses_dueling is not set), so its Q-values have no advantage stream"
    elif int(getattr(module, "num_atoms", 1)) > 1:
        why = (
            f"is distributional (num_atoms={module.num_atoms}): RLlib centres the advantage logits "
            "per atom before the softmax, so the expected Q is not V plus an advantage"
        )
    else:
        return None
    return UnsupportedTarget(
        f"target 'advantage': {describe(module, module_id)} {why}. It supports {Q_TARGETS}."
    )


def advantage(q: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """Q(s, a) - mean_a Q(s, a) at ``columns`` = A(s, a) - mean_a A(s, a) for RLlib's dueling
    combination (its nanmean: masked -inf actions are left out of the mean, as there)."""
    chosen = q.gather(1, columns[:, None])[:, 0]
    return chosen - torch.nan_to_num(q, neginf=torch.nan).nanmean(dim=1)


def logp_error(module: Any, module_id: str) -> UnsupportedTarget:
    return UnsupportedTarget(
        f"target 'logp': {describe(module, module_id)} is a Q-network (compute_q_values): it acts "
        "greedily (epsilon-greedy while exploring) on its Q-values and defines no action distribution, "
        f"so there is no log-probability to explain. It supports {Q_TARGETS}"
        + (", and 'advantage'." if advantage_error(module, module_id) is None else ".")
    )


def squashed_mean(module: Any, dist_inputs: torch.Tensor) -> torch.Tensor:
    """SAC's greedy action: the Gaussian mean squashed as RLlib's ``TorchSquashedGaussian`` squashes
    its samples (tanh, rescaled to its [low, high], default [-1, 1]): the action space the twin
    Q-networks are trained on. (RLlib's own ``to_deterministic()`` returns the unsquashed mean,
    which the env-to-module connector then clips; its log-probability would be undefined.)"""
    dist = module.get_inference_action_dist_cls().from_logits(dist_inputs)
    if hasattr(dist, "_squash") and hasattr(dist, "loc"):
        return dist._squash(dist.loc)
    return dist.to_deterministic().sample()


def sac_value(module: Any, module_id: str, batch: dict[str, Any], actions: np.ndarray | None) -> torch.Tensor:
    """min(Q1, Q2)(s, a) of a SAC module at the given actions (held fixed), shape (B,)."""
    import gymnasium as gym

    if not isinstance(module.action_space, gym.spaces.Box):
        raise UnsupportedTarget(
            f"target 'value': {describe(module, module_id)} has a {module.action_space} action space; "
            "rllib-saliency explains SAC's value for Box action spaces (Q(s, a) at the squashed mean). "
            "It supports 'action', 'action_K' and 'logp'."
        )
    if actions is None:
        raise ValueError(
            f"target 'value' of SAC {describe(module, module_id)} needs the action the Q-networks are "
            "evaluated at: resolve it first (explain() does: the greedy action at each observation)."
        )
    obs = batch[Columns.OBS]
    fixed = torch.as_tensor(np.asarray(actions), dtype=obs.dtype, device=obs.device).reshape(len(obs), -1)
    q = module.compute_q_values({**batch, Columns.ACTIONS: fixed})
    return q.reshape(-1)
