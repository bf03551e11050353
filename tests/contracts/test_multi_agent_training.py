"""Multi-agent training on this process's stack: each model is explained under its own tags, with
its own weights (the logged values are ``explain()`` with that model on the rows the callback
explained), and ``explain(algo, ...)`` picks a model by id. Written once for both stacks (it was a
twin in tests/test_callbacks_training.py and tests/new_stack/test_callbacks_new_stack.py)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import STACK
from tb_events import load, scalars

from rllib_saliency import SaliencyCallbacks, explain
from rllib_saliency.api import current_model

pytestmark = pytest.mark.slow

TARGETS = ("value", "logp")
# The keyword explain(algo, ...) names a model by, in the error that asks for one.
ID_WORD = {"old": "policy_id", "new": "module_id"}[STACK.name]


def expected_mean_abs(algo, model_id: str, target: str) -> np.ndarray:
    """explain() with the current model on the rows (and, for logp, the actions taken) the callback
    explained last, merged over the places that explained them."""
    total, count = 0.0, 0
    for obs, actions in STACK.explained(algo, model_id):
        model = current_model(algo, model_id)
        attribution = explain(model, obs, "gradient", target, actions=actions if target == "logp" else None)
        total = total + np.abs(attribution.values).sum(axis=0)
        count += len(obs)
    return total / count


def test_multi_agent_models_are_logged_separately(ray_cluster, tmp_path):
    from ray.rllib.examples.envs.classes.multi_agent import MultiAgentCartPole

    config = (
        STACK.config()
        .environment(MultiAgentCartPole, env_config={"num_agents": 2})
        .multi_agent(policies={"p0", "p1"}, policy_mapping_fn=lambda agent_id, *a, **k: f"p{agent_id}")
        .callbacks(
            SaliencyCallbacks.configure(
                every=1, methods=("gradient",), targets=TARGETS, logdir=str(tmp_path)
            )
        )
    )
    algo = config.build_algo()
    try:
        result = algo.train()
        events = load(str(tmp_path), algo)
        step = STACK.step(result)
        values = {}
        for model_id in ("p0", "p1"):
            for target in TARGETS:
                logged = [
                    scalars(events, f"saliency/{model_id}/{target}/gradient/mean_abs/f{j}")[step]
                    for j in range(4)
                ]
                np.testing.assert_allclose(logged, expected_mean_abs(algo, model_id, target), rtol=1e-4)
                values[model_id, target] = np.array(logged)
        # Two independently initialised models: their value maps must differ.
        assert not np.allclose(values["p0", "value"], values["p1", "value"], rtol=1e-3)
        assert "errors" not in result["saliency"]
        # explain(algo, ...) picks a model by id, and wants one when there are several.
        obs = np.zeros((3, 4), np.float32)
        for model_id in ("p0", "p1"):
            np.testing.assert_array_equal(
                explain(algo, obs, target="value", **{ID_WORD: model_id}).values,
                explain(current_model(algo, model_id), obs, target="value").values,
            )
        with pytest.raises(ValueError, match=rf"several models \['p0', 'p1'\]: pass {ID_WORD}="):
            explain(algo, obs)
    finally:
        algo.stop()
