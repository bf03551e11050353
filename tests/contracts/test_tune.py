"""Under Tune, on this process's stack, and through a real TensorBoard server: where the events land
and what it shows. Written once for both stacks (the new stack's copy was in
tests/new_stack/test_callbacks_robustness_new_stack.py)."""

from __future__ import annotations

import csv
import glob
import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
from browser import free_port
from conftest import STACK
from tb_events import load, scalars

from rllib_saliency import SaliencyCallbacks

pytestmark = pytest.mark.slow

TAG = "saliency/default_policy/action/gradient/mean_abs/f0"


@pytest.fixture(scope="module")
def tune_trial_dir(ray_cluster, tmp_path_factory):
    from ray import tune

    config = STACK.config().callbacks(
        SaliencyCallbacks.configure(every=1, methods=("gradient",), targets=("action",), image_every=1)
    )
    storage = tmp_path_factory.mktemp("tune")
    tuner = tune.Tuner(
        "PPO",
        param_space=config,
        run_config=tune.RunConfig(
            name="saliency", storage_path=str(storage), stop={"training_iteration": 2}, verbose=0
        ),
    )
    results = tuner.fit()
    assert not results.errors
    return results[0].path


def test_events_land_in_the_tune_trial_dir_beside_tunes_own(tune_trial_dir):
    ours = glob.glob(os.path.join(tune_trial_dir, "events.out.tfevents.*.saliency"))
    tunes = [p for p in glob.glob(os.path.join(tune_trial_dir, "events.out.tfevents.*")) if p not in ours]
    assert len(ours) == 1 and len(tunes) >= 1
    events = load(tune_trial_dir)  # TensorBoard reads both files as one run
    tags = set(events.Tags()["scalars"])
    assert "ray/tune/env_runners/episode_return_mean" in tags
    # Steps line up with RLlib's curves: the same step values for the same results.
    rllib_steps = {e.step for e in events.Scalars("ray/tune/env_runners/episode_return_mean")}
    assert set(scalars(events, TAG)) == rllib_steps and len(rllib_steps) == 2
    # One copy in TensorBoard: Tune's logger did not duplicate our scalars from the result.
    assert not [t for t in tags if t.startswith("ray/tune/saliency/") and "mean_abs" in t]


def test_other_tune_loggers_get_the_scalars(tune_trial_dir):
    with open(os.path.join(tune_trial_dir, "progress.csv")) as file:
        rows = list(csv.DictReader(file))
    column = "saliency/default_policy/action/gradient/mean_abs/f0"
    assert len(rows) == 2 and all(float(row[column]) > 0 for row in rows)
    with open(os.path.join(tune_trial_dir, "result.json")) as file:
        results = [json.loads(line) for line in file]
    assert all(r["saliency"]["default_policy/action/gradient/mean_abs/f0"] > 0 for r in results)
    # Each result's step is the one our events carry (new stack: the iteration, no timesteps_total).
    assert sorted(scalars(load(tune_trial_dir), TAG)) == [STACK.step(r) for r in results]


def test_a_real_tensorboard_server_lists_our_tags(tune_trial_dir):
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            tune_trial_dir,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        scalar_tags = image_tags = {}
        while time.monotonic() < deadline:
            try:
                base = f"http://127.0.0.1:{port}/data/plugin"
                scalar_tags = json.load(urllib.request.urlopen(f"{base}/scalars/tags", timeout=5))
                image_tags = json.load(urllib.request.urlopen(f"{base}/images/tags", timeout=5))
                if any(TAG in tags for tags in scalar_tags.values()):
                    break
            except OSError:
                pass
            time.sleep(1)
        run_scalars = next(iter(scalar_tags.values()))
        run_images = next(iter(image_tags.values()))
        assert TAG in run_scalars and "ray/tune/env_runners/episode_return_mean" in run_scalars
        for kind in ("importance", "evolution"):
            assert f"saliency/default_policy/action/gradient/{kind}" in run_images
    finally:
        server.terminate()
        server.wait(timeout=30)
