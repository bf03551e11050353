"""The callback's time-budget rule (callbacks/schedule.py) on iteration and computation times
given as numbers: what an image policy on a CPU learner and a CartPole MLP measured (README,
"Callback overhead"). Training runs with the rule are in tests/contracts/test_schedule.py."""

from __future__ import annotations

import pytest

from rllib_saliency.callbacks.schedule import FIRST_ALLOWANCE_S, ComputationSchedule


def run(
    schedule: ComputationSchedule,
    iterations: int,
    iteration_s: float,
    light_s: float,
    complete_s: float,
    first_deferred: dict[str, float] | None = None,
) -> list[str]:
    """Feed ``iterations`` results of ``iteration_s`` each; a light computation costs ``light_s``,
    a complete one ``complete_s``; the first computation runs what its allowance lets it run and
    leaves ``first_deferred`` out. Returns what each iteration did: "full", "light", "-"."""
    done = []
    for iteration in range(1, iterations + 1):
        plan = schedule.plan({"training_iteration": iteration, "time_this_iter_s": iteration_s})
        if plan is None:
            done.append("-")
            continue
        if schedule.computations == 0 and first_deferred:
            assert plan.allowance == pytest.approx(max(FIRST_ALLOWANCE_S, 0.05 * iteration_s))
            schedule.computed(light_s, plan, first_deferred)
            done.append("first, partial")
        elif plan.light:
            schedule.computed(light_s, plan, {"action/integrated_gradients": 0.0})
            done.append("light")
        else:
            schedule.computed(complete_s, plan, {})
            done.append("full")
    return done


def test_an_expensive_model_gets_light_computations_and_a_complete_one_when_the_budget_has_room():
    # Atari-shaped CNN on 2 CPU cores: 13 s iterations, the gradient of both targets 1.3 s, the
    # complete computation 74 s (first estimated at 90 s from the gradient's time per pass).
    schedule = ComputationSchedule(None, 0.05)
    done = run(schedule, 300, 13.0, 1.3, 74.0, first_deferred={"value/integrated_gradients": 88.7})
    assert done[0] == "first, partial"
    assert "full" not in done[:10]  # a short run does not pay for the complete computation
    lights = [i for i, d in enumerate(done) if d == "light"]
    assert lights and lights[0] < 10 and len(lights) >= 20  # the maps evolve in between
    assert "full" in done  # the complete computation comes once the budget has room for it
    first_full = done.index("full")
    # It came only when the whole share, with it, stays within the budget.
    assert (
        1.3 * (1 + len([d for d in done[:first_full] if d == "light"])) + 74.0
        <= 0.05 * (13.0 * (first_full + 1) + 74.0 + 1.3 * (1 + done[:first_full].count("light"))) + 1e-9
    )
    assert schedule.share() <= 0.05


def test_a_cheap_model_computes_everything_after_every_iteration():
    # CartPole MLP: 4 s iterations, a complete computation 0.15 s: the first one completes.
    schedule = ComputationSchedule(None, 0.05)
    done = run(schedule, 30, 4.0, 0.02, 0.15)
    assert done == ["full"] * 30


def test_without_further_parts_the_rule_is_the_share_so_far():
    # One method and no costly trust metric: every computation is complete, due while the share
    # so far is within the budget (it may overshoot by the one computation that crosses it).
    schedule = ComputationSchedule(None, 0.1, further_parts=False)
    done = run(schedule, 12, 1.0, 0.5, 0.5)
    # Due while computing <= 0.1 * (training + computing): iterations 1, 5 (0.5 <= 0.1 * 5.5) and
    # 9 (1.0 <= 0.1 * 10).
    assert [i + 1 for i, d in enumerate(done) if d == "full"] == [1, 5, 9] and "light" not in done


def test_an_explicit_every_runs_everything_on_that_schedule():
    schedule = ComputationSchedule(3, 0.01)
    done = run(schedule, 9, 1.0, 5.0, 5.0)
    assert done == ["-", "-", "full"] * 3
