"""SaliencyCallbacks never breaks training, on this process's stack: a crashed env runner, a
checkpoint restore (steps continue, the evolution history survives), a user's own callbacks
composed beside ours (make_multi_callbacks; a plain list on the new stack). Stack-only cases stay in
tests/test_callbacks_robustness.py and tests/new_stack/test_callbacks_robustness_new_stack.py."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import STACK
from ray.rllib.algorithms.algorithm import Algorithm
from tb_events import load, scalars

from rllib_saliency import SaliencyCallbacks
from rllib_saliency.history import HISTORY_FILE, EvolutionHistory

pytestmark = pytest.mark.slow

TAG = "saliency/default_policy/action/gradient/mean_abs/f2"


def test_restarted_env_runner_resumes_saliency(ray_cluster, tmp_path):
    config = (
        STACK.config(num_env_runners=2)
        .fault_tolerance(restart_failed_env_runners=True)
        .callbacks(
            SaliencyCallbacks.configure(
                every=1, methods=("gradient",), targets=("action",), logdir=str(tmp_path)
            )
        )
    )
    algo = config.build_algo()
    try:
        algo.train()
        # Kill one remote env runner's process, as a crash would.
        algo.env_runner_group.foreach_env_runner(
            lambda w: os._exit(1), local_env_runner=False, remote_worker_ids=[1]
        )
        results = [algo.train() for _ in range(3)]
        assert all(np.isfinite(r["env_runners"]["episode_return_mean"]) for r in results)
        logged = scalars(load(str(tmp_path)), TAG)
        # Saliency went on from the surviving runner (and the restarted one, once RLlib
        # brings it back): every iteration after the crash is logged.
        assert all(STACK.step(r) in logged for r in results)
        assert "saliency" in results[-1] and "errors" not in results[-1]["saliency"]
    finally:
        algo.stop()


def test_checkpoint_restore_continues_steps_and_evolution_history(ray_cluster, tmp_path):
    logdir = tmp_path / "logs"
    config = STACK.config().callbacks(
        SaliencyCallbacks.configure(
            every=1,
            methods=("gradient",), targets=("action",), image_every=1, logdir=str(logdir)
        )
    )
    algo = config.build_algo()
    first = [STACK.step(algo.train()) for _ in range(2)]
    checkpoint = STACK.save(algo, str(tmp_path / "checkpoint"))
    algo.stop()
    restored = Algorithm.from_checkpoint(checkpoint)
    try:
        later = STACK.step(restored.train())
        assert later > first[-1]
        events = load(str(logdir), restored)
        assert sorted(scalars(events, TAG)) == [*first, later]
        prefix = "saliency/default_policy/action/gradient"
        assert [e.step for e in events.Images(f"{prefix}/evolution")] == [*first, later]
        history = EvolutionHistory(str(logdir / HISTORY_FILE))[prefix]
        assert history.steps == [*first, later] and len(history.values) == 3
        assert len(events.Tensors("saliency/config")) == 1  # config text on the first write only
    finally:
        restored.stop()


# Old stack: a bare list in .callbacks([...]) crashes the env runners; make_multi_callbacks works.
COMPOSITIONS = ["make_multi_callbacks", "list"] if STACK.name == "new" else ["make_multi_callbacks"]


@pytest.mark.parametrize("form", COMPOSITIONS)
def test_composes_with_user_callbacks(ray_cluster, tmp_path, form):
    from ray.rllib.algorithms.callbacks import make_multi_callbacks
    from user_callbacks import MarkingCallbacks, user_batches

    classes = [
        MarkingCallbacks,
        SaliencyCallbacks.configure(
            every=2, methods=("gradient",), targets=("action",), logdir=str(tmp_path)
        ),
    ]
    config = STACK.config(num_env_runners=1).callbacks(
        classes if form == "list" else make_multi_callbacks(classes)
    )
    algo = config.build_algo()
    try:
        results = [algo.train() for _ in range(2)]
        assert all(r["user_callback_ran"] for r in results)
        assert "saliency" not in results[0] and "saliency" in results[1]
        assert sorted(scalars(load(str(tmp_path)), TAG)) == [STACK.step(results[1])]
        assert "errors" not in results[1]["saliency"]
        # The user's hook ran on the remote runner too, beside ours.
        assert algo.env_runner_group.foreach_env_runner(user_batches, local_env_runner=False)[0] >= 2
    finally:
        algo.stop()
