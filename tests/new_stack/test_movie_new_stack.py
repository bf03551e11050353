"""``rllib-saliency movie`` on a new-API-stack checkpoint (torch RLModule, CartPole), with the page
checked in headless Chromium."""

from __future__ import annotations

# isort: off
import rllib_saliency  # noqa: F401  (first: a safe TF/torch import order for RLlib's new stack)

# isort: on
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from browser import artifacts_dir, attribute, curve_points, dump_dom, external_references, screenshot, text_of
from conftest import learner_module, new_ppo_config
from PIL import Image

from rllib_saliency import explain

pytestmark = pytest.mark.slow

STEPS = 30


@pytest.fixture(scope="module")
def run(ray_cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("movie_new_stack")
    algo = new_ppo_config("CartPole-v1").build_algo()
    algo.train()
    checkpoint = str(root / "cartpole")
    algo.save_to_path(checkpoint)
    module = learner_module(algo)
    out = root / "out"
    result = subprocess.run(
        [sys.executable, "-m", "rllib_saliency.cli", "movie", checkpoint, "--out", str(out)]
        + ["--max-steps", str(STEPS), "--seed", "5", "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    yield {"result": result, "out": out, "module": module}
    algo.stop()


def test_new_stack_movie_files(run):
    result = run["result"]
    assert result.returncode == 0, result.stderr[-3000:]
    out = run["out"]
    assert sorted(os.listdir(out)) == ["episode_0.gif", "episode_0.html", "episode_0.npz"]
    # No events are written, so the last line points at the page, not at TensorBoard.
    page = (out / "episode_0.html").resolve().as_uri()
    assert result.stdout.strip().splitlines()[-1] == f"view: open {page} in a browser"
    steps = len(np.load(out / "episode_0.npz")["observations"])  # the episode, or --max-steps of it
    assert 1 < steps <= STEPS
    image = Image.open(out / "episode_0.gif")
    assert image.n_frames == steps and image.size == (360 + 340, 240 + 22)
    image.seek(steps // 2)
    assert np.asarray(image.convert("RGB"))[:240, :360].std() > 10  # the env's rendering
    data = np.load(out / "episode_0.npz")
    obs = data["observations"]
    first, _ = gym.make("CartPole-v1").reset(seed=5)
    np.testing.assert_allclose(obs[0], first, rtol=1e-6)
    value = explain(run["module"], obs, "gradient", "value")
    np.testing.assert_allclose(data["values"], value.target_values, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(data["critic_attributions"], value.values, rtol=1e-4, atol=1e-6)
    actor = explain(run["module"], obs, "gradient", "action")
    np.testing.assert_allclose(data["actor_attributions"], actor.values, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(np.argmax(data["action_outputs"], axis=1), data["actions"])


def test_new_stack_page_in_browser(run):
    page = run["out"] / "episode_0.html"
    steps = len(np.load(run["out"] / "episode_0.npz")["observations"])
    assert external_references(page.read_text()) == []
    for step in (1, steps - 1):
        dom, console = dump_dom(page, step)
        assert console == [] and text_of(dom, "errors") == ""
        assert attribute(dom, "view", "data-step") == str(step)
        x = float(attribute(dom, "marker-value", "x1"))
        assert x == pytest.approx(step * 1000 / (steps - 1), abs=0.06)
        assert [len(p) for p in curve_points(dom, "value")] == [steps]
        assert [len(p) for p in curve_points(dom, "actions")] == [steps, steps]
    assert screenshot(page, artifacts_dir("movie") / "cartpole_new_stack_step1.png", 1) == []
