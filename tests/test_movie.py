"""``rllib-saliency movie`` on old-API-stack checkpoints: GIF, explorer page (in headless Chromium), npz.

One CLI run on a real CartPole PPO checkpoint (vector observations, the env's own
rendering beside the bars) and one on an untrained Pong PPO checkpoint (RLlib's
DeepMind preprocessing, 84x84x4 images), run together by a module fixture. The
overlay placement is checked on synthetic maps without Ray.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import re
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from browser import artifacts_dir, attribute, curve_points, dump_dom, external_references, screenshot, text_of
from conftest import FRAMEWORK, ppo_config
from PIL import Image

from rllib_saliency import explain
from rllib_saliency.movie import MovieData, render_frames, write_page
from rllib_saliency.movie.page import page_payload

# The movie goes through explain(), whose graph/eager agreement other tests check: once is
# enough (the "tf" process; the browser and render tests run in the "tf2" one, to balance).
pytestmark = [pytest.mark.slow, pytest.mark.skipif(FRAMEWORK != "tf", reason="run once")]

CLI = [sys.executable, "-m", "rllib_saliency.cli", "movie"]
STEPS = 40  # --max-steps of the CartPole run
PONG_STEPS = 12


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [*CLI, *args, "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _describe(result: tuple[int, str, str]) -> str:
    return f"exit {result[0]}\nstdout:\n{result[1][-3000:]}\nstderr:\n{result[2][-3000:]}"


CARTPOLE_FEATURES = ("cart_position", "cart_velocity", "pole_angle", "pole_angular_velocity")


@pytest.fixture(scope="module")
def runs(trained, tmp_path_factory):
    root = tmp_path_factory.mktemp("movie")
    cartpole = trained("CartPole-v1")
    checkpoint = str(root / "cartpole")
    cartpole.save(checkpoint)
    jobs = {
        "cartpole": [
            checkpoint,
            "--out",
            str(root / "cartpole_out"),
            "--episodes",
            "2",
            "--max-steps",
            str(STEPS),
            "--seed",
            "3",
            "--feature-names",  # long ones: the bars must start right of the longest label
            ",".join(CARTPOLE_FEATURES),
        ],
        "bad_steps": [checkpoint, "--out", str(root / "bad"), "--max-steps", "0"],
    }
    pong = None
    if importlib.util.find_spec("ale_py") is not None:  # the atari extra; untrained weights suffice
        algo = (
            ppo_config("ale_py:ALE/Pong-v5")
            .environment("ale_py:ALE/Pong-v5", env_config={"frameskip": 1, "repeat_action_probability": 0.0})
            .build_algo()
        )
        pong = str(root / "pong")
        algo.save(pong)
        algo.stop()
        jobs["pong"] = [pong, "--out", str(root / "pong_out"), "--max-steps", str(PONG_STEPS), "--fps", "15"]
    processes = {name: _start(args) for name, args in jobs.items()}
    results = {}
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=600)
        results[name] = (process.returncode, stdout, stderr)
    return {"root": root, "results": results, "policy": cartpole.get_policy(), "pong": pong}


def _gif_frames(path) -> list[np.ndarray]:
    image = Image.open(path)
    frames = []
    for k in range(image.n_frames):
        image.seek(k)
        frames.append(np.asarray(image.convert("RGB")))
    return frames


def _blue(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 2].astype(int) - rgb[..., 0] > 60) & (rgb[..., 2].astype(int) - rgb[..., 1] > 60)


def _red(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0].astype(int) - rgb[..., 2] > 60) & (rgb[..., 0].astype(int) - rgb[..., 1] > 60)


def test_cartpole_writes_gif_page_and_npz(runs):
    result = runs["results"]["cartpole"]
    assert result[0] == 0, _describe(result)
    out = runs["root"] / "cartpole_out"
    for k in range(2):
        for suffix in ("gif", "html", "npz"):
            assert (out / f"episode_{k}.{suffix}").exists(), sorted(os.listdir(out))
    assert re.search(r"episode 0: 40 steps \(cut at --max-steps\), return 40\.00", result[1]), result[1]
    frames = _gif_frames(out / "episode_0.gif")
    assert len(frames) == STEPS
    assert frames[0].shape == (240 + 22, 360 + 340, 3)  # rendering 360x240 beside the bars, caption below
    for rgb in frames[::13]:
        rendering, bars = rgb[:240, :360], rgb[:240, 360:]
        assert rendering.std() > 10  # the cart and the pole, not a blank frame
        assert _blue(bars).sum() > 50 and _red(bars).sum() > 50  # actor and critic bars
    assert not np.array_equal(frames[0], frames[-1])


def test_cartpole_npz_matches_explain(runs):
    data = np.load(runs["root"] / "cartpole_out" / "episode_0.npz")
    policy = runs["policy"]
    obs = data["observations"]
    assert obs.shape == (STEPS, 4)
    first, _ = gym.make("CartPole-v1").reset(seed=3)  # episode 0 is reset with --seed
    np.testing.assert_allclose(obs[0], first, rtol=1e-6)
    np.testing.assert_array_equal(data["rewards"], np.ones(STEPS))
    value = explain(policy, obs, "gradient", "value")
    np.testing.assert_allclose(data["values"], value.target_values, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(data["critic_attributions"], value.values, rtol=1e-4, atol=1e-6)
    actor = explain(policy, obs, "gradient", "action")  # greedy rollouts: the taken action is the greedy one
    np.testing.assert_allclose(data["actor_attributions"], actor.values, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(np.argmax(data["action_outputs"], axis=1), data["actions"])
    np.testing.assert_allclose(data["action_outputs"].sum(axis=1), 1.0, rtol=1e-5)
    assert data["frames"].shape == (STEPS, 400, 600, 3)
    changes = np.abs(np.diff(data["values"]))
    assert set(data["bookmarks"]) <= set(range(1, STEPS))
    assert min(changes[data["bookmarks"] - 1]) >= np.sort(changes)[-len(data["bookmarks"])] - 1e-9


def test_cartpole_page_in_browser(runs):
    page = runs["root"] / "cartpole_out" / "episode_0.html"
    data = np.load(runs["root"] / "cartpole_out" / "episode_0.npz")
    shots = artifacts_dir("movie")
    doms = {}
    for step in (0, 7, STEPS - 1):
        dom, console = dump_dom(page, step)
        assert console == [], console
        assert text_of(dom, "errors") == ""
        doms[step] = dom
        assert attribute(dom, "view", "data-step") == str(step)  # the frame
        assert text_of(dom, "step") == str(step)
        expected_x = step * 1000 / (STEPS - 1)
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
    assert len(value) == STEPS and [x for x, _ in value] == sorted(x for x, _ in value)
    assert [len(points) for points in curve_points(dom, "reward")] == [STEPS]
    assert [len(points) for points in curve_points(dom, "actions")] == [STEPS, STEPS]  # one per action
    assert len(re.findall(r'class="bookmark"', dom)) == len(data["bookmarks"])
    assert text_of(dom, "meta-method") == "gradient" and text_of(dom, "meta-return") == str(STEPS)
    assert doms[0] != doms[7]
    for step in (0, 7):
        path = shots / f"cartpole_step{step}.png"
        assert screenshot(page, path, step) == []
        pixels = np.asarray(Image.open(path).convert("RGB"))
        assert pixels.std() > 10


def test_page_references_nothing_outside_itself(runs):
    for path in (runs["root"] / "cartpole_out").glob("*.html"):
        text = path.read_text()
        assert external_references(text) == []
        assert "<link" not in text and not re.search(r"<script[^>]*\bsrc=", text)
    assert external_references('<img src="http://example.org/a.png">')  # the check itself finds them


def test_bad_max_steps_fails_fast(runs):
    code, _, stderr = runs["results"]["bad_steps"]
    assert code == 1 and "--max-steps must be a positive integer" in stderr, stderr


def test_pong_movie(runs):
    if runs["pong"] is None:
        pytest.skip("ale-py is not installed")
    result = runs["results"]["pong"]
    assert result[0] == 0, _describe(result)
    out = runs["root"] / "pong_out"
    frames = _gif_frames(out / "episode_0.gif")
    assert len(frames) == PONG_STEPS and frames[0].shape == (252 + 22, 252, 3)  # 84x84 scaled by 3
    assert np.mean([f[:252].std() for f in frames]) > 10
    # An untrained net's maps cover the screen: actor (blue) and critic (red) add up to purple.
    over = np.stack([f[:252].astype(int) for f in frames])
    assert ((over[..., 2] - over[..., 1]) > 60).mean() > 0.05 and (
        (over[..., 0] - over[..., 1]) > 60
    ).mean() > 0.05
    assert abs(Image.open(out / "episode_0.gif").info["duration"] - 1000 / 15) <= 10  # GIF: 10 ms units
    data = np.load(out / "episode_0.npz")
    assert data["observations"].shape == (PONG_STEPS, 84, 84, 4)
    assert data["action_outputs"].shape == (PONG_STEPS, 6)
    page = out / "episode_0.html"
    dom, console = dump_dom(page, 5)
    assert console == [] and text_of(dom, "errors") == ""
    assert attribute(dom, "view", "data-step") == "5"
    assert [len(p) for p in curve_points(dom, "actions")] == [PONG_STEPS] * 6
    assert external_references(page.read_text()) == []
    assert screenshot(page, artifacts_dir("movie") / "pong_step5.png", 5) == []


def _synthetic(height: int = 16, width: int = 16) -> MovieData:
    """Two steps of 2-frame image observations; the actor looks at the top-left corner only,
    the critic at the bottom-right one."""
    steps = 2
    obs = np.full((steps, height, width, 2), 0.2, np.float32)
    actor = np.zeros_like(obs)
    critic = np.zeros_like(obs)
    actor[:, :4, :4] = 1.0
    critic[:, -4:, -4:] = -1.0
    return MovieData(
        observations=obs,
        actions=np.array([0, 1]),
        rewards=np.zeros(steps, np.float32),
        actor=actor,
        critic=critic,
        values=np.array([0.0, 1.0], np.float32),
        actor_values=np.zeros(steps, np.float32),
        action_outputs=np.full((steps, 2), 0.5, np.float32),
        action_output_kind="probability",
        frames=None,
        feature_names=["c0", "c1"],
        action_names=["a0", "a1"],
        method="gradient",
        policy_id="p",
        checkpoint="ckpt",
    )


def test_overlays_are_where_the_maps_are(tmp_path):
    data = _synthetic()
    frames = list(render_frames(data))
    assert len(frames) == 2
    rgb = np.asarray(frames[0])
    zoom = 252 // 16
    side = 16 * zoom
    image = rgb[:side, :side]
    blue, red = _blue(image), _red(image)
    cell = zoom * 4
    assert (
        blue[: cell // 2, : cell // 2].all()
        and not blue[side // 2 :, :].any()
        and not blue[:, side // 2 :].any()
    )
    assert (
        red[-cell // 2 :, -cell // 2 :].all()
        and not red[: side // 2, :].any()
        and not red[:, : side // 2].any()
    )
    # The page's maps: the same corners, pooled.
    payload = page_payload(data, fps=8)
    cells = payload["image"]["map_height"] * payload["image"]["map_width"]
    actor = np.frombuffer(base64.b64decode(payload["image"]["actor"]), np.uint8).reshape(
        2, payload["image"]["map_height"], -1
    )
    critic = np.frombuffer(base64.b64decode(payload["image"]["critic"]), np.uint8).reshape(
        2, payload["image"]["map_height"], -1
    )
    assert actor.size == 2 * cells
    assert actor[0, 0, 0] > 200 and actor[0, -1, -1] == 0 and critic[0, -1, -1] > 200 and critic[0, 0, 0] == 0
    size = write_page(str(tmp_path / "synthetic.html"), data, 8, "synthetic")
    assert size == os.path.getsize(tmp_path / "synthetic.html")
    assert external_references((tmp_path / "synthetic.html").read_text()) == []
