"""The last computation's images are written when training is saved or stops, whatever the
``image_every`` cadence: a contract of both stacks, run on the stack of this pytest process."""

from __future__ import annotations

import pytest
from conftest import STACK
from tb_events import load

from rllib_saliency import SaliencyCallbacks

pytestmark = pytest.mark.slow

PREFIX = "saliency/default_policy/action/gradient"


def image_steps(logdir: str, kind: str, algo=None) -> list[int]:
    events = load(logdir, algo)
    if f"{PREFIX}/{kind}" not in events.Tags()["images"]:
        return []
    return [e.step for e in events.Images(f"{PREFIX}/{kind}")]


def test_save_and_stop_write_the_last_computations_images(ray_cluster, tmp_path):
    logdir = str(tmp_path / "events")
    config = STACK.config().callbacks(
        SaliencyCallbacks.configure(
            every=1,
            methods=("gradient",), targets=("action",), image_every=5, logdir=logdir
        )
    )
    algo = config.build_algo()
    steps = []
    try:
        steps.append(STACK.step(algo.train()))  # the first computation has images
        steps.append(STACK.step(algo.train()))
        assert image_steps(logdir, "importance", algo) == steps[:1]  # computation 2 of 5: none
        STACK.save(algo, str(tmp_path / "checkpoint"))  # the stack's own save
        for kind in ("importance", "evolution"):
            assert image_steps(logdir, kind, algo) == steps, kind
        third = algo.train()
        steps.append(STACK.step(third))
        assert image_steps(logdir, "importance", algo) == steps[:2]
        assert "errors" not in third["saliency"]
        algo.save(str(tmp_path / "checkpoint_2"))  # Trainable.save, on both stacks
        assert image_steps(logdir, "importance", algo) == steps
        steps.append(STACK.step(algo.train()))
    finally:
        algo.stop()
    for kind in ("importance", "evolution"):
        assert image_steps(logdir, kind, algo) == steps, kind


def test_a_failure_of_the_final_images_never_keeps_stop_or_save_from_running(caplog):
    from rllib_saliency.callbacks import _write_final_images_on_stop_and_save

    class Algorithm:
        def __init__(self):
            self.calls = []

        def cleanup(self):
            self.calls.append("cleanup")

        def save_checkpoint(self, checkpoint_dir):
            self.calls.append(("save_checkpoint", checkpoint_dir))
            return checkpoint_dir

    class Broken:
        def flush(self, algorithm):
            raise RuntimeError("disk full")

    algorithm = Algorithm()
    _write_final_images_on_stop_and_save(algorithm, Broken())
    _write_final_images_on_stop_and_save(algorithm, Broken())  # a second call wraps nothing again
    assert algorithm.save_checkpoint("/tmp/x") == "/tmp/x"
    algorithm.cleanup()
    assert algorithm.calls == [("save_checkpoint", "/tmp/x"), "cleanup"]
    assert caplog.text.count("final images failed") == 2  # logged, once per call: not wrapped twice
    assert type(algorithm).cleanup is Algorithm.cleanup  # the class is untouched
