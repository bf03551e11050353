"""The last computation's images are written when training is saved or stops, whatever the
``image_every`` cadence (new API stack)."""

from __future__ import annotations

import pytest
from conftest import new_ppo_config
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
    config = new_ppo_config().callbacks(
        SaliencyCallbacks.configure(
            methods=("gradient",), targets=("action",), image_every=5, logdir=logdir
        )
    )
    algo = config.build_algo()
    try:
        algo.train()  # step 1 (the new stack's step is the iteration): the first has images
        algo.train()
        assert image_steps(logdir, "importance", algo) == [1]  # computation 2 of 5: none
        algo.save_to_path(str(tmp_path / "checkpoint"))
        for kind in ("importance", "evolution"):
            assert image_steps(logdir, kind, algo) == [1, 2], kind
        third = algo.train()
        assert image_steps(logdir, "importance", algo) == [1, 2]
        assert "errors" not in third["saliency"]
        algo.save(str(tmp_path / "checkpoint_2"))  # Trainable.save -> save_checkpoint -> save_to_path
        assert image_steps(logdir, "importance", algo) == [1, 2, 3]
        algo.train()
    finally:
        algo.stop()
    for kind in ("importance", "evolution"):
        assert image_steps(logdir, kind, algo) == [1, 2, 3, 4], kind
