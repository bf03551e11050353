"""The last computation's images are written when training is saved or stops, whatever the
``image_every`` cadence (old API stack; tests/new_stack has the same on the new stack)."""

from __future__ import annotations

import pytest
from conftest import ppo_config
from tb_events import load

from rllib_saliency import SaliencyCallbacks

pytestmark = pytest.mark.slow

PREFIX = "saliency/default_policy/action/gradient"


def image_steps(logdir: str, kind: str) -> list[int]:
    events = load(logdir)
    if f"{PREFIX}/{kind}" not in events.Tags()["images"]:
        return []
    return [e.step for e in events.Images(f"{PREFIX}/{kind}")]


def test_save_and_stop_write_the_last_computations_images(ray_cluster, tmp_path):
    logdir = str(tmp_path / "events")
    config = ppo_config().callbacks(
        SaliencyCallbacks.configure(
            methods=("gradient",), targets=("action",), image_every=5, logdir=logdir
        )
    )
    algo = config.build_algo()
    try:
        steps = [int(algo.train()["timesteps_total"])]  # the first computation has images
        steps.append(int(algo.train()["timesteps_total"]))
        assert image_steps(logdir, "importance") == steps[:1]  # computation 2 of 5: none
        algo.save(str(tmp_path / "checkpoint"))
        for kind in ("importance", "evolution"):
            assert image_steps(logdir, kind) == steps, kind
        third = algo.train()
        steps.append(int(third["timesteps_total"]))
        assert image_steps(logdir, "importance") == steps[:2]
        assert "errors" not in third["saliency"]
    finally:
        algo.stop()
    for kind in ("importance", "evolution"):
        assert image_steps(logdir, kind) == steps, kind
