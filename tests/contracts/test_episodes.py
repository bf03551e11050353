"""``episode_every``: one greedy episode during training, as an animated GIF in TensorBoard and an
explorer page beside the events; a failure inside never stops training. A contract of both stacks,
run on this process's (new stack: the driver's env runner plays the episode, the learner's module
computes both heads' maps; old stack: the driver's policy does both)."""

from __future__ import annotations

import importlib
import io
import logging
import os
import re

import numpy as np
import pytest
from browser import external_references
from conftest import STACK
from PIL import Image
from tb_events import load

from rllib_saliency import SaliencyCallbacks, learner_module

TAG = "saliency/default_policy/episode"
MAX_STEPS = 12


def check_episodes(logdir: str, results: list[dict]) -> None:
    """One GIF per computation under the tag, one frame per played step, and its page."""
    steps = [int(r.get("timesteps_total") or r["training_iteration"]) for r in results]  # as report.py
    for result in results:
        assert "errors" not in result["saliency"], result["saliency"]
        assert 1 <= result["saliency"]["default_policy/episode/length"] <= MAX_STEPS
        assert result["saliency"]["episode_seconds"] > 0
    events = load(logdir)
    assert TAG in events.Tags()["images"]
    images = events.Images(TAG)
    assert [e.step for e in images] == steps
    for event, result in zip(images, results, strict=True):
        gif = Image.open(io.BytesIO(event.encoded_image_string))
        assert gif.format == "GIF"
        assert gif.n_frames == result["saliency"]["default_policy/episode/length"] > 1
        assert (gif.width, gif.height) == (event.width, event.height)
        gif.seek(gif.n_frames - 1)
        assert len(set(gif.convert("RGB").getdata())) > 8  # a drawn frame, not a blank one
    for step in steps:
        page = os.path.join(logdir, "episodes", f"step_{step}.html")
        text = open(page, encoding="utf-8").read()
        assert external_references(text) == []
        assert "<link" not in text and not re.search(r"<script[^>]*\bsrc=", text)
        assert f"training step {step}" in text


@pytest.mark.slow
def test_episodes_are_logged_as_gif_and_page(ray_cluster, tmp_path):
    logdir = str(tmp_path / "events")
    config = STACK.config().callbacks(
        SaliencyCallbacks.configure(
            every=1,
            methods=("gradient",),
            targets=("action",),
            logdir=logdir,
            episode_every=1,
            episode_max_steps=MAX_STEPS,
        )
    )
    algo = config.build_algo()
    try:
        results = [algo.train() for _ in range(2)]
        if STACK.name == "new":
            # The episode is played by the driver's env runner's module: it holds the learner's weights.
            played = algo.get_module().get_state(inference_only=True)
            learned = learner_module(algo).get_state(inference_only=True)
            assert played.keys() == learned.keys()
            for key, value in played.items():
                np.testing.assert_allclose(np.asarray(value), np.asarray(learned[key]), err_msg=key)
    finally:
        algo.stop()
    check_episodes(logdir, results)


@pytest.mark.slow
def test_a_failing_episode_never_stops_training(ray_cluster, tmp_path, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("the episode's env is gone")

    stack_package = importlib.import_module(f"rllib_saliency.stacks.{STACK.name}")
    monkeypatch.setattr(stack_package, "episode_data", broken)
    logdir = str(tmp_path / "events")
    config = STACK.config().callbacks(
        SaliencyCallbacks.configure(
            every=1,
            methods=("gradient",), targets=("action",), logdir=logdir, episode_every=1, episode_max_steps=5
        )
    )
    algo = config.build_algo()
    try:
        with caplog.at_level(logging.ERROR, logger="rllib_saliency"):
            results = [algo.train() for _ in range(2)]
    finally:
        algo.stop()
    assert [r["training_iteration"] for r in results] == [1, 2]
    assert [r["saliency"]["errors"] for r in results] == [1, 2]  # counted, every computation
    assert caplog.text.count("training episode failed") == 1  # the traceback, once
    assert "the episode's env is gone" in caplog.text
    for result in results:  # the rest of the computation is there
        assert any(k.startswith("default_policy/action/gradient/mean_abs/") for k in result["saliency"])
    assert TAG not in load(logdir).Tags()["images"]


@pytest.mark.parametrize(
    "options, name",
    [
        ({"episode_every": 0}, "episode_every"),
        ({"episode_every": 1.5}, "episode_every"),
        ({"episode_max_steps": 0}, "episode_max_steps"),
        ({"episode_max_steps": None}, "episode_max_steps"),
        ({"episode_method": "nope"}, "episode_method"),
    ],
)
def test_bad_episode_options_name_the_parameter(options, name):
    with pytest.raises(ValueError, match=f"'{name}'"):
        SaliencyCallbacks.configure(**options)


def test_episodes_are_off_by_default():
    from rllib_saliency.callbacks.settings import DEFAULT_EPISODE_MAX_STEPS, SaliencySettings

    settings = SaliencySettings()
    assert settings.episode_every is None and settings.episode_max_steps == DEFAULT_EPISODE_MAX_STEPS


def test_multi_agent_runs_are_skipped_with_one_warning(caplog):
    from types import SimpleNamespace

    from rllib_saliency.callbacks.episodes import TrainingEpisodes
    from rllib_saliency.callbacks.errors import ErrorLog
    from rllib_saliency.callbacks.images import BackgroundImages
    from rllib_saliency.callbacks.settings import make_settings

    class Stack:
        def episode_data(self, *args, **kwargs):
            raise AssertionError("no episode is played for a multi-agent run")

    errors = ErrorLog()
    episodes = TrainingEpisodes(make_settings(episode_every=2), Stack(), errors, BackgroundImages(errors))
    algorithm = SimpleNamespace(config=SimpleNamespace(is_multi_agent=True))
    assert [episodes.due(c) for c in (1, 2, 3, 4, 5)] == [True, False, True, False, True]
    with caplog.at_level(logging.WARNING, logger="rllib_saliency"):
        for computation in (1, 3, 5):
            result: dict = {}
            episodes.maybe_log(algorithm, None, computation, computation, result)
            assert "errors" not in result.get("saliency", {})
    assert caplog.text.count("not supported for multi-agent runs") == 1
    assert not episodes.due(5)  # once per computation
