"""RLlib's old API stack: TF policies, ``SampleBatch``es, policy ids. All that knows it lives here:

* ``training.py``: the training callback's side (reservoirs filled at ``on_sample_end``, explained
  on each env runner with its own policy copy; the driver's policy as the current model);
* ``batches.py``: the recurrent step inputs of a ``SampleBatch``;
* ``checkpoint.py``: reading an old-stack checkpoint, loading the policy, building the algorithm's env
  runner;
* ``rollout.py``: greedy episodes of a policy (the CLI's rows, movies).

This module is what the callback, ``explain()``, the CLI and the movies call: the same names on
every stack (see :mod:`rllib_saliency.stacks`), none of them branching on the stack.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rllib_saliency.stacks.checkpoint import Checkpoint, check_environment
from rllib_saliency.stacks.old.batches import per_step_states
from rllib_saliency.stacks.old.checkpoint import build_env_runner, check_custom_code, inspect, load_policy
from rllib_saliency.stacks.old.rollout import (
    greedy_actions,
    play_old_stack,
    rollout_algorithm,
    rollout_policy,
)
from rllib_saliency.stacks.old.training import (
    NAME,
    collect,
    current_model,
    episode_data,
    model,
    model_ids,
    sample,
    weights_fingerprint,
)
from rllib_saliency.stacks.rollout import Rollouts

__all__ = [
    "MODEL_WORD",
    "NAME",
    "before_rllib_import",
    "check_loadable",
    "check_model",
    "check_movie",
    "collect",
    "current_model",
    "episode_data",
    "greedy_actions",
    "inspect",
    "load",
    "model",
    "model_ids",
    "on_algorithm_init",
    "per_step_states",
    "play_movie",
    "release",
    "rollouts",
    "sample",
    "states_to_explain",
    "weights_fingerprint",
]

MODEL_WORD = "policy"  # what the stack calls a model (messages, ``policy_id=``)


def check_model(model: Any, target: str) -> None:
    """Nothing to refuse: a TF policy given directly is the driver's or a worker's full policy."""


def on_algorithm_init(callbacks: Any, algorithm: Any) -> None:
    """Nothing to hook: env runners sample on this stack."""


def before_rllib_import() -> None:
    """An old-stack checkpoint is a TensorFlow one (the only framework explained on this stack):
    RLlib's import then skips torch."""
    from rllib_saliency.frameworks import skip_torch

    skip_torch()


def check_loadable(checkpoint: Checkpoint, rollout: bool) -> None:
    """Checks that need no TensorFlow objects: the environment to roll out in, the
    custom models and action distributions the config names."""
    if rollout:
        check_environment(checkpoint.config)
    check_custom_code(checkpoint.config)


def _rolls_out_env_runner(checkpoint: Checkpoint, rollout: bool) -> bool:
    """An algorithm checkpoint's episodes are its own env runner's (filters, preprocessing);
    everything else needs the policy alone."""
    return rollout and checkpoint.kind == "Algorithm"


def load(checkpoint: Checkpoint, rollout: bool, seed: int) -> tuple[Any, Any]:
    """The policy to explain, and what rolls it out: the algorithm's env runner (its env, filters
    and preprocessing) for an algorithm checkpoint that is rolled out, else None."""
    if _rolls_out_env_runner(checkpoint, rollout):
        runner = build_env_runner(checkpoint, seed)
        return runner.get_policy(checkpoint.policy_id), runner
    return load_policy(checkpoint), None


def rollouts(
    checkpoint: Checkpoint, policy: Any, runner: Any, episodes: int, seed: int, bar: Any
) -> Rollouts:
    """Whole greedy episodes: the algorithm's env runner's if :func:`load` built it, else the policy's
    own loop in a fresh environment."""
    if runner is not None:
        return rollout_algorithm(runner, checkpoint.policy_id, episodes, bar)
    return rollout_policy(policy, checkpoint.config, episodes, seed, bar)


def release(runner: Any) -> None:
    """Stop the env runner :func:`load` built, if any (closes its environment)."""
    if runner is not None:
        runner.stop()


def states_to_explain(
    obs_path: str | None, policy: Any, n: int, states: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, ...]:
    """The recurrent states ``explain`` uses: the rollout's (``--obs``: the initial state, which the
    engine fills in when none are given)."""
    return states


def check_movie(checkpoint: Checkpoint) -> None:
    """A movie plays episodes in the checkpoint's environment: it must be found."""
    check_environment(checkpoint.config)


def play_movie(
    checkpoint: Checkpoint, policy: Any, episodes: int, seed: int, max_steps: int | None, bar: Any
) -> list[Any]:
    """Greedy episodes of the policy for a movie (``EpisodeRecord``\\ s, frames rendered)."""
    return play_old_stack(policy, checkpoint.config, episodes, seed, max_steps, bar)
