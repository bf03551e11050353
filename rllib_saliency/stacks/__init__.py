"""Everything that knows which RLlib API stack it is on: one package per stack.

:mod:`~rllib_saliency.stacks.old` knows TF policies, ``SampleBatch``es and policy
ids; :mod:`~rllib_saliency.stacks.new` knows torch RLModules, episodes, the
learner's module (which has the value head), connectors and module ids. Each package holds
``training.py`` (the callback's side), ``checkpoint.py`` (reading and loading checkpoints) and
``rollout.py`` (greedy episodes); what the stacks share is here (``checkpoint.py``: the
:class:`~rllib_saliency.stacks.checkpoint.Checkpoint` record, ``rollout.py``: played episodes and
rows). The callback, ``explain()``, the CLI and the movie code pick a package with
:func:`stack_of` (an algorithm or config) or :func:`checkpoint_stack` (a checkpoint) and call it;
they never branch on the stack themselves. Each package provides the same names:

training (the callback, ``explain(algo, ...)``):

* ``sample(callbacks, runner, samples)``: on an env runner, at ``on_sample_end`` (here:
  :func:`sample`, which picks the stack from what RLlib hands over);
* ``on_algorithm_init(callbacks, algorithm)``: on the driver, when the algorithm is built (the
  new stack hooks an offline algorithm's learners here: their minibatches are the rows);
* ``collect(callbacks, algorithm, find, plan)``: on the driver, the workers' reports
  (summaries, errors, observations, the parts ``plan`` deferred), errors as data, never raising;
* ``model_ids(algorithm)`` and ``current_model(algorithm, model_id)``: the model that holds
  every target with the learner's current weights (new stack: the learner's module, a local
  copy when the learner is remote; old stack: the driver's policy), for ``explain(algo, ...)``;
* ``model(algorithm, model_id)``: a model with that id's spaces, for names and
  activation maximization (reports may name a better space for the names:
  ``layout_spaces``, e.g. the Dict space a new-stack connector flattened);
* ``episode_data(algorithm, model_id, settings, seed, label)``: a training episode's movie data;
* old stack only, ``weights_fingerprint(algorithm, model_id)``: the learner's weights,
  for the staleness check of reports computed on env runners (new-stack reports come
  from the learner itself and carry no fingerprints);
* ``NAME`` ("old"/"new") and ``MODEL_WORD`` ("policy"/"module").

checkpoints (the CLI):

* ``inspect(path, model_id)``: the stack's :class:`Checkpoint` (here: :func:`inspect_checkpoint`);
* ``before_rllib_import()``, ``check_loadable(checkpoint, rollout)`` (no stack needs a Ray instance for
  checkpoints: both load and roll out in the command's process);
* ``load(checkpoint, rollout, seed)`` -> ``(model, runner)``, ``rollouts(checkpoint, model, runner,
  episodes, seed, bar)``, ``release(runner)``;
* ``states_to_explain(obs_path, model, n, states)``, ``greedy_actions(model, obs, states)``;
* ``check_movie(checkpoint)``, ``play_movie(checkpoint, model, episodes, seed, max_steps, bar)``.

A third stack is one more package with these names, and one more line in :func:`_package`.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from rllib_saliency.stacks.checkpoint import Checkpoint


def _package(name: str) -> ModuleType:
    """The stack package ``name`` ("old" or "new"), imported on first use (a stack's RLlib classes
    are only imported where that stack is used)."""
    if name == "new":
        from rllib_saliency.stacks import new

        return new
    from rllib_saliency.stacks import old

    return old


def stack_of(algorithm_or_config: Any) -> ModuleType:
    """The stack package for an algorithm (or its config)."""
    config = getattr(algorithm_or_config, "config", algorithm_or_config)
    return _package("new" if getattr(config, "enable_rl_module_and_learner", False) else "old")


def checkpoint_stack(checkpoint: Checkpoint | str) -> ModuleType:
    """The stack package for a checkpoint: a :class:`Checkpoint`, or a directory (read from the
    folder alone, no RLlib import; a path that is no checkpoint gives the old stack, whose
    inspection then says what is wrong)."""
    if isinstance(checkpoint, Checkpoint):
        return _package(checkpoint.stack)
    from rllib_saliency.stacks.checkpoint import is_new_stack_checkpoint

    return _package("new" if is_new_stack_checkpoint(checkpoint) else "old")


def inspect_checkpoint(path: str, policy_id: str | None) -> Checkpoint:
    """Validate a checkpoint and pick the policy, without building anything or starting Ray."""
    from rllib_saliency.stacks.checkpoint import check_directory, with_feature_names

    path = check_directory(path)
    return with_feature_names(checkpoint_stack(path).inspect(path, policy_id))


def sample(callbacks: Any, samples: Any, env_runner: Any, worker: Any) -> None:
    """``on_sample_end`` on either stack: the new stack hands over episodes (a list), the old one a
    ``SampleBatch``; each stack names the runner its own way."""
    if isinstance(samples, list):
        _package("new").sample(callbacks, env_runner or worker, samples)
    else:
        _package("old").sample(callbacks, worker or env_runner, samples)


def check_model(model: Any, target: str) -> None:
    """Refuse a model given directly that cannot answer ``target`` truthfully (new stack: a value
    target of an env runner's copy of a module); the model's framework says its stack."""
    from rllib_saliency.backends import is_torch_module

    _package("new" if is_torch_module(model) else "old").check_model(model, target)
