"""RLlib's new API stack: torch RLModules, episodes, connectors, module ids. All that knows it
lives here:

* ``training.py``: the training callback's side (rows taken from the episodes at
  ``on_sample_end``, explained on the learner with its full module; the learner's module as the
  current model);
* ``checkpoint.py``: reading a new-stack checkpoint, loading the learner's module(s);
* ``rollout.py``: greedy episodes through the checkpoint's connector pipelines (the CLI's rows,
  movies);
* ``offline.py``: the training callback's side for offline algorithms (BC, MARWIL, CQL: no env
  runner samples; rows come from the learners' training minibatches), chosen here per algorithm
  (``config.is_offline``); ``offline_env.py``: their connectors built from the config.

This module is what the callback, ``explain()``, the CLI and the movies call: the same names on
every stack (see :mod:`rllib_saliency.stacks`), none of them branching on the stack.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rllib_saliency.errors import CLIError
from rllib_saliency.sample_summaries import FULL, ComputationPlan
from rllib_saliency.stacks.checkpoint import Checkpoint
from rllib_saliency.stacks.new import offline, training
from rllib_saliency.stacks.new.checkpoint import (
    check_rollout,
    greedy_actions,
    inspect,
    load_module,
    load_multi_module,
    obs_file_states,
)
from rllib_saliency.stacks.new.rollout import play_new_stack, rollout_new_stack, rollout_new_stack_multi_agent
from rllib_saliency.stacks.new.training import (
    NAME,
    check_model,
    current_model,
    env_runner_holding,
    learner_module,
    model_ids,
    sample,
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
    "env_runner_holding",
    "episode_data",
    "episode_skip_reason",
    "greedy_actions",
    "inspect",
    "learner_module",
    "load",
    "model",
    "model_ids",
    "on_algorithm_init",
    "play_movie",
    "release",
    "rollouts",
    "sample",
    "states_to_explain",
]

MODEL_WORD = "module"  # what the stack calls a model (messages, ``module_id=``)


def _is_offline(algorithm: Any) -> bool:
    """Offline algorithms (BC, MARWIL, CQL: ``input_`` names data) train on rows no env runner
    sampled: their training side is :mod:`.offline`."""
    return bool(getattr(getattr(algorithm, "config", algorithm), "is_offline", False))


def _training_side(algorithm: Any) -> Any:
    """The module that knows this algorithm's training rows: :mod:`.offline` or :mod:`.training`."""
    return offline if _is_offline(algorithm) else training


def on_algorithm_init(callbacks: Any, algorithm: Any) -> None:
    """Offline: hook the learners' minibatches (the rows to explain); online: nothing to do."""
    if _is_offline(algorithm):
        offline.install(callbacks, algorithm)


def collect(callbacks: Any, algorithm: Any, find: Any, plan: ComputationPlan = FULL) -> list[dict[str, Any]]:
    """The reports of one computation: the env runners' rows (online) or the learners' (offline),
    explained by the learner's module as far as ``plan`` allows."""
    return _training_side(algorithm).collect(callbacks, algorithm, find, plan)


def model(algorithm: Any, module_id: str) -> Any:
    """A module with that id's spaces (the env runner's; offline, the learner's: there is none)."""
    return _training_side(algorithm).model(algorithm, module_id)


def episode_data(algorithm: Any, module_id: str, settings: Any, seed: int, label: str) -> Any:
    """``episode_every``: one greedy episode and its maps."""
    return _training_side(algorithm).episode_data(algorithm, module_id, settings, seed, label)


def episode_skip_reason(algorithm: Any) -> str | None:
    """Why this run gets no training episodes (an offline config without an env), or None."""
    return offline.episode_skip_reason(algorithm) if _is_offline(algorithm) else None


def before_rllib_import() -> None:
    """A new-stack checkpoint is a torch one: RLlib's import then skips TensorFlow (7-22 s)."""
    from rllib_saliency.frameworks import skip_tensorflow

    skip_tensorflow()


def check_loadable(checkpoint: Checkpoint, rollout: bool) -> None:
    """Checks that need no Ray: rollouts need the algorithm's environment and connectors."""
    if rollout:
        check_rollout(checkpoint)


def load(checkpoint: Checkpoint, rollout: bool, seed: int) -> tuple[Any, Any]:
    """The module to explain, and what rolls it out: to roll out a multi-agent checkpoint, the
    learner's whole ``MultiRLModule`` (every agent acts with its mapped module), else None."""
    if rollout and checkpoint.info.get("multi_agent"):
        multi_module = load_multi_module(checkpoint)
        return multi_module[checkpoint.policy_id], multi_module
    return load_module(checkpoint), None


def rollouts(
    checkpoint: Checkpoint, module: Any, runner: Any, episodes: int, seed: int, bar: Any
) -> Rollouts:
    """Whole greedy episodes through the checkpoint's connectors (every agent's, if multi-agent)."""
    if runner is not None:
        return rollout_new_stack_multi_agent(checkpoint, runner, episodes, seed, bar)
    return rollout_new_stack(checkpoint, module, episodes, seed, bar)


def release(runner: Any) -> None:
    """Nothing to stop: no algorithm was built."""


def states_to_explain(
    obs_path: str | None, module: Any, n: int, states: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, ...]:
    """The recurrent states ``explain`` uses: the rollout's; for ``--obs``, those the ``.npz`` holds,
    else the initial state for every observation."""
    if not states and module.is_stateful():
        return obs_file_states(obs_path, module, n)
    return states


def check_movie(checkpoint: Checkpoint) -> None:
    """A movie plays single-agent episodes through the checkpoint's connectors."""
    if checkpoint.info.get("multi_agent"):
        raise CLIError(
            f"{checkpoint.path!r} is a multi-agent checkpoint: movies of multi-agent environments "
            "are not supported yet; use `rllib-saliency explain` (or `maximize`) with --policy "
            f"MODULE_ID (here {checkpoint.policy_id!r}), which roll out the multi-agent environment "
            "and record the chosen module's observations."
        )
    check_rollout(checkpoint)


def play_movie(
    checkpoint: Checkpoint, module: Any, episodes: int, seed: int, max_steps: int | None, bar: Any
) -> list[Any]:
    """Greedy episodes of the module for a movie (``EpisodeRecord``\\ s, frames rendered)."""
    return play_new_stack(checkpoint, module, episodes, seed, max_steps, bar)
