"""When the callback computes, on this process's stack: by default after every iteration while
the computations took at most ``max_overhead`` of the training time (RLlib's ``time_this_iter_s``),
else spaced out; with an explicit ``every``, exactly that schedule."""

from __future__ import annotations

import pytest
from conftest import STACK
from tb_events import load, scalars

from rllib_saliency import SaliencyCallbacks

pytestmark = pytest.mark.slow

TAG = "saliency/default_policy/action/integrated_gradients/mean_abs/f0"


def expensive(**options):
    """Integrated Gradients with many steps: a computation costs a good share of these short
    iterations, as the defaults do on an image policy on a CPU learner."""
    return SaliencyCallbacks.configure(
        methods=("integrated_gradients",),
        targets=("action",),
        method_options={"integrated_gradients": {"steps": 512}},
        trust_metrics=(),
        **options,
    )


def test_computations_keep_within_max_overhead(ray_cluster, tmp_path):
    budget = 0.1
    config = STACK.config().callbacks(expensive(max_overhead=budget, logdir=str(tmp_path)))
    algo = config.build_algo()
    try:
        results = [algo.train() for _ in range(6)]
        events = load(str(tmp_path), algo)
    finally:
        algo.stop()
    computed = [r["training_iteration"] for r in results if "overhead" in r.get("saliency", {})]
    assert computed[0] == 1  # the first iteration always computes
    assert len(computed) < len(results), [r.get("saliency", {}).get("overhead") for r in results]
    # Replay the rule from what the results report: training time is the sum of RLlib's
    # time_this_iter_s; the computations' time follows from each reported share.
    training = computing = 0.0
    expected = []
    for result in results:
        training += result["time_this_iter_s"]
        if computing <= budget * (training + computing):
            expected.append(result["training_iteration"])
            share = result["saliency"]["overhead"]
            assert 0 < share <= 1
            assert "seconds" in result["saliency"] and "errors" not in result["saliency"]
            computing = share * training / (1 - share)
        else:
            assert "saliency" not in result or "overhead" not in result["saliency"]
    assert computed == expected
    # The event files hold the computed steps only.
    steps = {STACK.step(r) for r in results if r["training_iteration"] in computed}
    assert set(scalars(events, TAG)) == steps


def test_an_explicit_every_computes_whatever_it_costs(ray_cluster, tmp_path):
    config = STACK.config().callbacks(expensive(every=1, max_overhead=0.01, logdir=str(tmp_path)))
    algo = config.build_algo()
    try:
        results = [algo.train() for _ in range(3)]
    finally:
        algo.stop()
    assert all("overhead" in r["saliency"] for r in results)
    assert results[0]["saliency"]["overhead"] > 0.01  # over the budget, computed anyway


def test_max_overhead_must_be_a_fraction():
    for bad in (0, 1.5, -0.1, "5%", True):
        with pytest.raises(ValueError, match="'max_overhead' must be a fraction in \\(0, 1\\]"):
            SaliencyCallbacks.configure(max_overhead=bad)


def test_a_first_computation_leaves_out_the_parts_that_would_not_fit(ray_cluster, tmp_path, caplog):
    """Integrated Gradients with 100,000 steps: estimated from the gradient's time per pass at far
    more than the first computation's allowance, so it is left out (one INFO line says so); the
    gradient's maps come at once, and light computations (the gradient only) follow within the
    budget while the complete computation waits for room."""
    import logging

    config = STACK.config().callbacks(
        SaliencyCallbacks.configure(
            methods=("gradient", "integrated_gradients"),
            targets=("action",),
            method_options={"integrated_gradients": {"steps": 100_000}},
            trust_metrics=("completeness",),
            # A large share, so light computations follow within these few short iterations.
            max_overhead=0.9,
            logdir=str(tmp_path),
        )
    )
    algo = config.build_algo()
    try:
        with caplog.at_level(logging.INFO, logger="rllib_saliency"):
            results = [algo.train() for _ in range(4)]
        events = load(str(tmp_path), algo)
    finally:
        algo.stop()
    computed = [r for r in results if "overhead" in r.get("saliency", {})]
    assert computed[0] is results[0] and len(computed) >= 2
    assert all(r["saliency"].get("partial") == 1 for r in computed)
    assert all("errors" not in r["saliency"] for r in computed)
    gradient = "saliency/default_policy/action/gradient/mean_abs/f0"
    assert set(scalars(events, gradient)) == {STACK.step(r) for r in computed}
    assert "saliency/default_policy/action/integrated_gradients/mean_abs/f0" not in events.Tags()["scalars"]
    told = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(told) == 1 and "default_policy/action/integrated_gradients" in told[0], told


def test_plans_run_the_first_part_alike_and_defer_the_rest_by_name(trained):
    """explain_sample (what every stack runs per model) under the three plans: everything; the
    first method only; further parts only within an allowance. The first part's numbers do not
    depend on the plan."""
    import gymnasium as gym
    import numpy as np

    from rllib_saliency.api import current_model
    from rllib_saliency.callbacks.settings import SaliencySettings
    from rllib_saliency.sample_summaries import FULL, ComputationPlan, Sample, explain_sample

    model = current_model(trained("CartPole-v1"), "default_policy")
    space = gym.make("CartPole-v1").observation_space
    space.seed(0)
    obs = np.stack([space.sample() for _ in range(32)]).astype(np.float32) * 0.1
    settings = SaliencySettings(
        methods=("gradient", "integrated_gradients"), targets=("action", "value"),
        trust_metrics=("completeness", "deletion", "agreement"),
    )
    sample = Sample(obs, np.zeros(len(obs), np.int64))

    def run(plan):
        explained = explain_sample(model, "p", sample, settings, np.random.default_rng(0), plan=plan)
        assert explained.errors == []
        return explained, {(s.target, s.method): s for s in explained.summaries}

    full, full_maps = run(FULL)
    assert sorted(full_maps) == sorted((t, m) for t in ("action", "value") for m in settings.methods)
    assert full.deferred == {} and "deletion_auc" in full_maps["value", "integrated_gradients"].trust
    light, light_maps = run(ComputationPlan(light=True))
    assert sorted(light_maps) == [("action", "gradient"), ("value", "gradient")]
    assert sorted(light.deferred) == sorted(
        f"{t}/{part}" for t in ("action", "value")
        for part in ("gradient/deletion", "integrated_gradients")
    )
    assert "deletion_auc" not in light_maps["value", "gradient"].trust
    tight, tight_maps = run(ComputationPlan(allowance=0.0))
    assert sorted(tight_maps) == sorted(light_maps) and sorted(tight.deferred) == sorted(light.deferred)
    # Estimated from the gradient's time per pass: IG's 32 steps cost more than one gradient.
    assert all(seconds > 0 for seconds in tight.deferred.values())
    assert tight.deferred["value/integrated_gradients"] > 0
    for key, summary in light_maps.items():
        np.testing.assert_array_equal(summary.sum_abs, full_maps[key].sum_abs)
        np.testing.assert_array_equal(tight_maps[key].sum_abs, full_maps[key].sum_abs)
