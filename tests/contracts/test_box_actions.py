"""Box actions in training, on this process's stack: one tag per action dimension, the user's
feature names, only the trust metrics asked for, and ``logp`` explaining the actions actually
taken (checked against ``explain()`` with the current model on the rows the callback explained).
Written once for both stacks (it was a twin in tests/test_callbacks_training.py and
tests/new_stack/test_callbacks_new_stack.py)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import STACK
from tb_events import load, scalars

from rllib_saliency import SaliencyCallbacks, explain
from rllib_saliency.api import current_model

pytestmark = pytest.mark.slow


def test_box_actions_log_every_action_dimension_and_feature_names(ray_cluster, tmp_path):
    names = ["cos_theta", "sin_theta", "theta_dot"]
    config = STACK.config("Pendulum-v1").callbacks(
        SaliencyCallbacks.configure(
            methods=("gradient",),
            targets=("action", "logp"),
            feature_names=names,
            trust_metrics=("randomization",),
            logdir=str(tmp_path),
        )
    )
    algo = config.build_algo()
    try:
        result = algo.train()
        step = STACK.step(result)
        events = load(str(tmp_path), algo)
        scalar_tags = set(events.Tags()["scalars"])
        for target in ("action_0", "logp"):
            for name in names:
                assert f"saliency/default_policy/{target}/gradient/mean_abs/{name}" in scalar_tags
        assert "errors" not in result["saliency"]
        randomization = scalars(
            events, "saliency/default_policy/action_0/gradient/trust/randomization_rank_corr"
        )
        assert -1 <= randomization[step] < 0.95
        assert not [t for t in scalar_tags if "deletion_auc" in t]  # only the metrics asked for
        # logp explains the log-probability of the actions the runner actually took.
        [(obs, actions)] = STACK.explained(algo)
        attribution = explain(current_model(algo), obs, "gradient", "logp", actions=actions)
        logged = [scalars(events, f"saliency/default_policy/logp/gradient/mean_abs/{n}")[step] for n in names]
        np.testing.assert_allclose(logged, np.abs(attribution.values).mean(0), rtol=1e-4)
    finally:
        algo.stop()
