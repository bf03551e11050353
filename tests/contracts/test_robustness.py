"""SaliencyCallbacks never breaks training, on this process's stack: a crashed env runner, a
checkpoint restore (steps continue, the evolution history survives), a user's own callbacks
composed beside ours (make_multi_callbacks; a plain list on the new stack), an unwritable log dir,
a model the engine cannot explain, a chart that fails to draw. Written once for both stacks; each
stack's unexplainable model is in tests/unsupported_models.py."""

from __future__ import annotations

import logging
import os
import threading

import numpy as np
import pytest
import unsupported_models
from conftest import STACK
from ray.rllib.algorithms.algorithm import Algorithm
from tb_events import load, scalars

from rllib_saliency import SaliencyCallbacks, render
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


def saliency_errors(caplog) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "rllib_saliency" and r.levelno >= logging.ERROR
    ]


def test_unwritable_logdir_keeps_training_and_results(ray_cluster, tmp_path, caplog):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    config = STACK.config().callbacks(
        SaliencyCallbacks.configure(
            every=1, methods=("gradient",), targets=("action",), logdir=str(blocker / "logs")
        )
    )
    algo = config.build_algo()
    try:
        with caplog.at_level(logging.ERROR, logger="rllib_saliency"):
            results = [algo.train() for _ in range(2)]
        for result in results:
            assert np.isfinite(result["env_runners"]["episode_return_mean"])
            assert float(result["saliency"]["default_policy/action/gradient/mean_abs/f2"]) > 0
        assert results[-1]["saliency"]["errors"] == 2
        opening = [m for m in saliency_errors(caplog) if "opening the TensorBoard log dir" in m]
        assert len(opening) == 1 and "NotADirectoryError" in opening[0]  # logged once, with the traceback
    finally:
        algo.stop()


def test_a_model_the_engine_cannot_explain_is_reported_once_and_skipped(ray_cluster, tmp_path, caplog):
    config, message = getattr(unsupported_models, f"{STACK.name}_stack")(STACK.config())
    config = config.callbacks(
        SaliencyCallbacks.configure(every=1, methods=("gradient",), targets=("action",), logdir=str(tmp_path))
    )
    algo = config.build_algo()
    try:
        with caplog.at_level(logging.ERROR, logger="rllib_saliency"):
            results = [algo.train() for _ in range(2)]
        assert results[-1]["training_iteration"] == 2
        assert np.isfinite(results[-1]["env_runners"]["episode_return_mean"])
        assert results[-1]["saliency"]["errors"] == 1  # reported once, then the model is skipped
        messages = saliency_errors(caplog)
        assert len(messages) == 1 and message in messages[0]
    finally:
        algo.stop()


def test_images_render_off_the_training_thread_and_a_render_failure_keeps_training(
    ray_cluster, tmp_path, caplog, monkeypatch
):
    """Charts are drawn on the callback's image thread (training does not wait for them); a
    chart that fails to draw is logged and counted, and the scalars of every step are written."""
    drawn_on: list[str] = []
    draw = render.importance_chart

    def importance_chart(*args, **kwargs):
        drawn_on.append(threading.current_thread().name)
        if len(drawn_on) > 1:
            raise RuntimeError("no fonts")
        return draw(*args, **kwargs)

    monkeypatch.setattr(render, "importance_chart", importance_chart)
    config = STACK.config().callbacks(
        SaliencyCallbacks.configure(
            every=1, methods=("gradient",), targets=("action",), image_every=1, logdir=str(tmp_path)
        )
    )
    algo = config.build_algo()
    try:
        with caplog.at_level(logging.ERROR, logger="rllib_saliency"):
            results = [algo.train() for _ in range(3)]
        events = load(str(tmp_path), algo)
    finally:
        algo.stop()
    assert drawn_on and all(name.startswith("rllib-saliency-images") for name in drawn_on)
    assert threading.current_thread().name not in drawn_on
    steps = [STACK.step(r) for r in results]
    assert sorted(scalars(events, TAG)) == steps
    assert [e.step for e in events.Images("saliency/default_policy/action/gradient/importance")] == steps[:1]
    # The failure of computation 2 is counted in the result of computation 3 (it renders meanwhile).
    assert results[2]["saliency"]["errors"] >= 1
    assert any("rendering images failed" in m for m in saliency_errors(caplog))
