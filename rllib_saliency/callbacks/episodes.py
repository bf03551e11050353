"""One whole episode through the agent's eyes during training (``episode_every``).

Every ``episode_every``-th computation (the first one included), the driver plays
one greedy episode with the current weights in a fresh environment made from the
algorithm's env config, at most ``episode_max_steps`` steps, and computes both
heads' maps at every step with ``episode_method`` (the stack adapter does both:
:func:`rllib_saliency.stacks.old.episode_data`, :func:`rllib_saliency.stacks.new.episode_data`).
The movie package draws it (:mod:`rllib_saliency.movie`): the GIF goes to
TensorBoard under ``saliency/{policy_id}/episode`` (the image dashboard plays an
animated GIF stored as an encoded image) and beside the events as
``episodes/step_{N}.gif``, the explorer page as ``episodes/step_{N}.html``.

Playing it and computing the maps block training (that time is in the result as
``saliency/episode_seconds``; see README for CartPole), so it is off by default; the
GIF and the page are drawn on the callback's image thread (``images.py``).
A failure is logged once by the callback's :class:`~.errors.ErrorLog` and training
goes on. Multi-agent runs are skipped with one warning.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from typing import Any

import numpy as np

from rllib_saliency.callbacks.errors import ErrorLog
from rllib_saliency.callbacks.images import BackgroundImages
from rllib_saliency.callbacks.settings import SaliencySettings

logger = logging.getLogger("rllib_saliency")

RESULT_KEY = "saliency"
EPISODE_DIR = "episodes"
FPS = 8.0
DEFAULT_ID = "default_policy"  # the single-agent policy id (old stack) and module id (new stack)


def episode_tag(policy_id: str) -> str:
    return f"{RESULT_KEY}/{policy_id}/episode"


def write_episode(writer: Any, data: Any, policy_id: str, step: int) -> tuple[str, str]:
    """The GIF (TensorBoard and ``episodes/step_{step}.gif``) and the page; returns both paths."""
    from PIL import Image

    from rllib_saliency.movie import render_frames, write_gif, write_page

    folder = os.path.join(writer.logdir, EPISODE_DIR)
    os.makedirs(folder, exist_ok=True)
    stem = os.path.join(folder, f"step_{step}" if policy_id == DEFAULT_ID else f"step_{step}_{policy_id}")
    write_gif(stem + ".gif", render_frames(data), FPS)
    with open(stem + ".gif", "rb") as file:
        gif = file.read()
    with Image.open(stem + ".gif") as image:
        width, height = image.size
    writer.image(episode_tag(policy_id), gif, height, width, step)
    writer.flush()
    cut = f", cut at {len(data)} steps" if data.truncated_by_max_steps else ""
    write_page(stem + ".html", data, FPS, f"{policy_id} / training step {step}{cut} / {data.method}")
    return stem + ".gif", stem + ".html"


class TrainingEpisodes:
    """Plays, explains and logs the training episodes of one run (driver side)."""

    def __init__(
        self, settings: SaliencySettings, stack: Any, errors: ErrorLog, background: BackgroundImages
    ) -> None:
        self.settings = settings
        self.stack = stack
        self.errors = errors
        # Drawing the GIF and the page is most of an episode's cost: done off the training thread.
        self._background = background
        self._last_computation: int | None = None
        self._warned = False

    def due(self, computation: int) -> bool:
        """The first computation and every ``episode_every``-th after it, once each."""
        every = self.settings.episode_every
        return bool(every) and computation != self._last_computation and computation % every == 1 % every

    def _skip(self, algorithm: Any) -> str | None:
        """Why this run gets no episodes (said once), or None."""
        if getattr(algorithm.config, "is_multi_agent", False):
            return "training episodes (episode_every) are not supported for multi-agent runs yet"
        offline = getattr(self.stack, "episode_skip_reason", None)  # e.g. an offline config without an env
        if offline is not None and offline(algorithm) is not None:
            return offline(algorithm)
        policies = self.settings.policies
        if policies is not None and DEFAULT_ID not in policies:
            return f"training episodes are played with policy {DEFAULT_ID!r}, which 'policies' leaves out"
        return None

    def maybe_log(self, algorithm: Any, writer: Any, computation: int, step: int, result: dict) -> None:
        """Play and log one episode if this computation is due; never raises."""
        if not self.due(computation):
            return
        self._last_computation = computation
        why = self._skip(algorithm)
        if why is not None:
            if not self._warned:
                logger.warning("rllib_saliency: %s; training goes on without them.", why)
                self._warned = True
            return
        started = time.perf_counter()
        try:
            seed = self.settings.seed + computation
            data = self.stack.episode_data(
                algorithm, DEFAULT_ID, self.settings, seed, f"training step {step}"
            )
            if writer is not None:
                self._background.submit(
                    functools.partial(write_episode, writer, data, DEFAULT_ID, step),
                    "training episode (GIF and page)",
                )
            scalars = result.setdefault(RESULT_KEY, {})
            # np.longdouble: kept out of Tune's TensorBoard logger (see report.py), reaches the others.
            scalars[f"{DEFAULT_ID}/episode/return"] = np.longdouble(data.episode_return)
            scalars[f"{DEFAULT_ID}/episode/length"] = len(data)
        except Exception as error:  # noqa: BLE001 - an episode never breaks training
            self.errors.exception("training episode", error)
        finally:
            result.setdefault(RESULT_KEY, {})["episode_seconds"] = time.perf_counter() - started
