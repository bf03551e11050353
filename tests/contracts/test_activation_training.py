"""Activation maximization during training, on this process's stack: computed at the first
computation and then every ``activation_maximization_every``-th, logged as a value and a picture,
and better than its starting points. Written once for both stacks (it ran on the old stack only,
in tests/test_callbacks_training.py)."""

from __future__ import annotations

import pytest
from conftest import STACK
from tb_events import decode_png, load, scalars

from rllib_saliency import SaliencyCallbacks, explain
from rllib_saliency.api import current_model

pytestmark = pytest.mark.slow


def test_activation_maximization_in_training(ray_cluster, tmp_path):
    config = STACK.config().callbacks(
        SaliencyCallbacks.configure(
            every=1,
            methods=("gradient",),
            targets=("action",),
            trust_metrics=(),
            activation_maximization_every=2,
            activation_maximization_options={"steps": 30, "n_starts": 4},
            logdir=str(tmp_path),
        )
    )
    algo = config.build_algo()
    try:
        results = [algo.train() for _ in range(3)]
        events = load(str(tmp_path), algo)
        steps = [STACK.step(r) for r in results]
        for k in (0, 1):
            tag = f"saliency/default_policy/actmax/action_{k}"
            logged = scalars(events, f"{tag}/value")
            assert sorted(logged) == [steps[0], steps[2]]  # the 1st computation, then every 2nd
            assert float(results[2]["saliency"][f"default_policy/actmax/action_{k}/value"]) == pytest.approx(
                logged[steps[2]], rel=1e-6
            )
            image = events.Images(f"{tag}/input")[-1]
            assert decode_png(image).std() > 10
        # The optimum beats its starting points: the first n_starts sampled observations explained.
        obs, _ = STACK.explained(algo)[0]
        model = current_model(algo, "default_policy")
        sampled_best = explain(model, obs[:4], "gradient", "action_1").target_values.max()
        assert logged[steps[2]] >= sampled_best - 1e-4
        assert "errors" not in results[-1]["saliency"]
    finally:
        algo.stop()
