"""Everything that differs between RLlib's two API stacks, one module each.

:mod:`~rllib_saliency.stacks.old` knows TF policies, ``SampleBatch``es and policy
ids; :mod:`~rllib_saliency.stacks.new` knows torch RLModules, episodes, the
learner's module (which has the value head) and module ids;
:mod:`~rllib_saliency.stacks.new_offline` is the new stack for offline algorithms (no env
runners: rows from the learners' training data). The callback calls
one of them and nothing else stack-specific. Each adapter provides:

* ``sample(callbacks, runner, samples)``: on an env runner, at ``on_sample_end``;
* ``collect(callbacks, algorithm, find)``: on the driver, the workers' reports
  (summaries, errors, observations), errors as data, never raising;
* ``model_ids(algorithm)`` and ``current_model(algorithm, model_id)``: the model that holds
  every target with the learner's current weights (new stack: the learner's module, a local
  copy when the learner is remote; old stack: the driver's policy), for ``explain(algo, ...)``;
* ``model(algorithm, model_id)``: a model with that id's spaces, for names and
  activation maximization (reports may name a better space for the names:
  ``layout_spaces``, e.g. the Dict space a new-stack connector flattened);
* old stack only, ``weights_fingerprint(algorithm, model_id)``: the learner's weights,
  for the staleness check of reports computed on env runners (new-stack reports come
  from the learner itself and carry no fingerprints).
"""

from __future__ import annotations

from typing import Any


def stack_of(algorithm_or_config: Any) -> Any:
    """The adapter module for an algorithm (or its config)."""
    config = getattr(algorithm_or_config, "config", algorithm_or_config)
    if getattr(config, "enable_rl_module_and_learner", False):
        from rllib_saliency.stacks import new, new_offline

        # Offline algorithms (BC, MARWIL, CQL: input_ names data) train on data env runners never
        # sampled: rows from the learners' training batches.
        if getattr(config, "is_offline", False):
            return new_offline
        return new
    from rllib_saliency.stacks import old

    return old
