"""``rllib-saliency movie`` on an old-API-stack Pong checkpoint (image observations: GIF, page in
headless Chromium, npz), and the overlays' placement on synthetic maps without Ray. The CartPole
movie, written once for both stacks, is tests/contracts/test_movie_command.py."""

from __future__ import annotations

import base64
import importlib.util
import os

import numpy as np
import pytest
from browser import artifacts_dir, attribute, curve_points, dump_dom, external_references, screenshot, text_of
from cli_output import run_commands
from conftest import FRAMEWORK, STACK, ppo_config
from pictures import blue, gif_frames, red
from PIL import Image

from rllib_saliency.movie import MovieData, render_frames, write_page
from rllib_saliency.movie.page import page_payload

# The movie goes through explain(), whose graph/eager agreement other tests check: once is
# enough (the "tf" process; the browser and render tests run in the "tf2" one, to balance).
pytestmark = [pytest.mark.slow, pytest.mark.skipif(FRAMEWORK != "tf", reason="run once")]

PONG_STEPS = 12


@pytest.fixture(scope="module")
def pong(ray_cluster, tmp_path_factory):
    """``rllib-saliency movie`` on an untrained Pong PPO checkpoint (RLlib's DeepMind
    preprocessing, 84x84x4 images): untrained weights suffice."""
    if importlib.util.find_spec("ale_py") is None:  # the atari extra
        pytest.skip("ale-py is not installed")
    root = tmp_path_factory.mktemp("movie")
    algo = (
        ppo_config("ale_py:ALE/Pong-v5")
        .environment("ale_py:ALE/Pong-v5", env_config={"frameskip": 1, "repeat_action_probability": 0.0})
        .build_algo()
    )
    checkpoint = STACK.save(algo, str(root / "pong"))
    algo.stop()
    command = ["movie", "--max-steps", str(PONG_STEPS), "--fps", "15"]
    done = run_commands(checkpoint, {"pong_out": command}, str(root))
    return done["pong_out"], root / "pong_out"


def test_pong_movie(pong):
    result, out = pong
    assert result.returncode == 0, result.stderr[-3000:]
    frames = gif_frames(out / "episode_0.gif")
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
    blues, reds = blue(image), red(image)
    cell = zoom * 4
    assert (
        blues[: cell // 2, : cell // 2].all()
        and not blues[side // 2 :, :].any()
        and not blues[:, side // 2 :].any()
    )
    assert (
        reds[-cell // 2 :, -cell // 2 :].all()
        and not reds[: side // 2, :].any()
        and not reds[:, : side // 2].any()
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
