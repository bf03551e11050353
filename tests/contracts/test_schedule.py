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
