"""``rllib-saliency movie`` on this process's stack: a CartPole checkpoint of one training
iteration, two greedy episodes to GIF, page (checked in headless Chromium) and npz, the npz equal
to ``explain()`` with the checkpoint's model. Written once for both stacks (it was a twin in
tests/test_movie.py and tests/new_stack/test_movie_new_stack.py); the old stack runs it in the
"tf" process. Pong and the overlay placement stay in tests/test_movie.py."""

from __future__ import annotations

import os
import re
import subprocess

import gymnasium as gym
import numpy as np
import pytest
from browser import artifacts_dir, attribute, curve_points, dump_dom, external_references, screenshot, text_of
from cli_output import run_commands
from conftest import FRAMEWORK, STACK
from pictures import blue, gif_frames, red
from PIL import Image

from rllib_saliency import explain
from rllib_saliency.api import current_model

pytestmark = [pytest.mark.slow, pytest.mark.skipif(FRAMEWORK == "tf2", reason="old stack: run in 'tf'")]

MAX_STEPS = 40
CARTPOLE_FEATURES = ("cart_position", "cart_velocity", "pole_angle", "pole_angular_velocity")


def describe(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def runs(trained, tmp_path_factory):
    root = tmp_path_factory.mktemp("movie")
    algo = trained("CartPole-v1")
    checkpoint = STACK.save(algo, str(root / "cartpole"))
    done = run_commands(
        checkpoint,
        {
            "cartpole_out": [
                "movie",
                *("--episodes", "2", "--max-steps", str(MAX_STEPS), "--seed", "3"),
                "--feature-names",  # long ones: the bars must start right of the longest label
                ",".join(CARTPOLE_FEATURES),
            ],
            "bad": ["movie", "--max-steps", "0"],
        },
        str(root),
    )
    results = {"cartpole": done["cartpole_out"], "bad_steps": done["bad"]}
    out = root / "cartpole_out"
    return {"out": out, "results": results, "model": current_model(algo, "default_policy")}


def episode_steps(runs) -> int:
    """The recorded episode's length: the greedy episode, or --max-steps of it."""
    steps = len(np.load(runs["out"] / "episode_0.npz")["observations"])
    assert 8 < steps <= MAX_STEPS
    return steps


def test_cartpole_writes_gif_page_and_npz(runs):
    result = runs["results"]["cartpole"]
    assert result.returncode == 0, describe(result)
    out = runs["out"]
    assert sorted(os.listdir(out)) == [f"episode_{k}.{s}" for k in range(2) for s in ("gif", "html", "npz")]
    steps = episode_steps(runs)
    cut = r" \(cut at --max-steps\)" if steps == MAX_STEPS else ""
    assert re.search(rf"episode 0: {steps} steps{cut}, return {steps}\.00", result.stdout), result.stdout
    # No events are written, so the last line points at the page, not at TensorBoard.
    page = (out / "episode_0.html").resolve().as_uri()
    assert result.stdout.strip().splitlines()[-1] == f"view: open {page} in a browser"
    frames = gif_frames(out / "episode_0.gif")
    assert len(frames) == steps
    assert frames[0].shape == (240 + 22, 360 + 340, 3)  # rendering 360x240 beside the bars, caption below
    for rgb in frames[:: max(1, steps // 3)]:
        rendering, bars = rgb[:240, :360], rgb[:240, 360:]
        assert rendering.std() > 10  # the cart and the pole, not a blank frame
        assert blue(bars).sum() > 50 and red(bars).sum() > 50  # actor and critic bars
    assert not np.array_equal(frames[0], frames[-1])


def test_cartpole_npz_matches_explain(runs):
    data = np.load(runs["out"] / "episode_0.npz")
    model = runs["model"]
    obs = data["observations"]
    steps = episode_steps(runs)
    assert obs.shape == (steps, 4)
    first, _ = gym.make("CartPole-v1").reset(seed=3)  # episode 0 is reset with --seed
    np.testing.assert_allclose(obs[0], first, rtol=1e-6)
    np.testing.assert_array_equal(data["rewards"], np.ones(steps))
    value = explain(model, obs, "gradient", "value")
    np.testing.assert_allclose(data["values"], value.target_values, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(data["critic_attributions"], value.values, rtol=1e-4, atol=1e-6)
    actor = explain(model, obs, "gradient", "action")  # greedy rollouts: the taken action is the greedy one
    np.testing.assert_allclose(data["actor_attributions"], actor.values, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(np.argmax(data["action_outputs"], axis=1), data["actions"])
    np.testing.assert_allclose(data["action_outputs"].sum(axis=1), 1.0, rtol=1e-5)
    assert data["frames"].shape == (steps, 400, 600, 3)
    changes = np.abs(np.diff(data["values"]))
    assert set(data["bookmarks"]) <= set(range(1, steps))
    assert min(changes[data["bookmarks"] - 1]) >= np.sort(changes)[-len(data["bookmarks"])] - 1e-9


def test_cartpole_page_in_browser(runs):
    page = runs["out"] / "episode_0.html"
    data = np.load(runs["out"] / "episode_0.npz")
    steps = episode_steps(runs)
    doms = {}
    for step in (0, 7, steps - 1):
        dom, console = dump_dom(page, step)
        assert console == [], console
        assert text_of(dom, "errors") == ""
        doms[step] = dom
        assert attribute(dom, "view", "data-step") == str(step)  # the frame
        assert text_of(dom, "step") == str(step)
        expected_x = step * 1000 / (steps - 1)
        for chart in ("value", "reward", "actions"):
            assert float(attribute(dom, f"marker-{chart}", "x1")) == pytest.approx(expected_x, abs=0.06)
        # The labels ("pole_angular_velocity = -0.048") were measured, and no bar starts on them.
        label_end = float(attribute(dom, "bar-chart", "data-label-end"))
        assert label_end > 5 * len("pole_angular_velocity = -0.000")  # ~200 px at 12 px type
        for k in range(4):
            shown = float(attribute(dom, f"bar-actor-{k}", "data-value"))
            assert shown == pytest.approx(float(data["actor_attributions"][step, k]), rel=1e-3, abs=1e-5)
            for head in ("actor", "critic"):
                assert float(attribute(dom, f"bar-{head}-{k}", "x")) > label_end
    dom = doms[7]
    (value,) = curve_points(dom, "value")
    assert len(value) == steps and [x for x, _ in value] == sorted(x for x, _ in value)
    assert [len(points) for points in curve_points(dom, "reward")] == [steps]
    assert [len(points) for points in curve_points(dom, "actions")] == [steps, steps]  # one per action
    assert len(re.findall(r'class="bookmark"', dom)) == len(data["bookmarks"])
    assert text_of(dom, "meta-method") == "gradient" and text_of(dom, "meta-return") == str(steps)
    # The maps' names (a policy's; a Q-network's are its Q-values', tests/new_stack/test_q_learning.py).
    assert [text_of(dom, "label-actor"), text_of(dom, "label-critic")] == ["actor", "critic"]
    assert list(data["map_labels"]) == ["actor", "critic"]
    assert doms[0] != doms[7]
    for step in (0, 7):
        path = artifacts_dir("movie") / f"cartpole_{STACK.name}_stack_step{step}.png"
        assert screenshot(page, path, step) == []
        assert np.asarray(Image.open(path).convert("RGB")).std() > 10


def test_page_references_nothing_outside_itself(runs):
    for path in runs["out"].glob("*.html"):
        text = path.read_text()
        assert external_references(text) == []
        assert "<link" not in text and not re.search(r"<script[^>]*\bsrc=", text)
    assert external_references('<img src="http://example.org/a.png">')  # the check itself finds them


def test_bad_max_steps_fails_fast(runs):
    result = runs["results"]["bad_steps"]
    assert result.returncode == 1, describe(result)
    assert "--max-steps must be a positive integer" in result.stderr, describe(result)
