"""The episode explorer: one self-contained HTML page per episode (no network, data inline).

The page holds the frames as inline base64 images (PNG or JPEG, whichever is
smaller for the episode) and the maps as arrays: image observations' maps are
average-pooled to at most ``MAP_SIDE`` pixels a side, quantised to bytes, and
drawn over the frame in the browser (actor blue, critic red, smoothed when scaled
up), so that a 1,000-step Atari episode stays a few megabytes. Vector observations
get per-feature bars. Curves of value, reward and action probabilities are inline
SVG with one point per step and a marker at the current step; bookmarks jump to the
steps where the value changes most. ``#step=K`` in the URL opens step ``K``.
"""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Any

import numpy as np
from PIL import Image

from rllib_saliency.movie.data import MovieData
from rllib_saliency.movie.frames import bar_rows, image_heat, map_scale, newest_frame, pool_factor, pooled
from rllib_saliency.movie.template import SCRIPT, TEMPLATE


def _encode(image: Image.Image, kind: str) -> str:
    buffer = io.BytesIO()
    if kind == "jpeg":
        image.convert("RGB").save(buffer, "JPEG", quality=75)
    else:
        image.save(buffer, "PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _pick_format(image: Image.Image) -> str:
    return "png" if len(_encode(image, "png")) <= len(_encode(image, "jpeg")) else "jpeg"


def _frames(images: list[Image.Image]) -> dict[str, Any]:
    kind = _pick_format(images[0])
    return {"mime": f"image/{kind}", "data": [_encode(image, kind) for image in images]}


def _map_bytes(maps: np.ndarray, factor: int) -> str:
    scale = map_scale(maps)
    heat = np.stack([image_heat(m, scale) for m in maps])
    cells = pooled(heat, factor)
    return base64.b64encode(np.round(np.clip(cells, 0.0, 1.0) * 255).astype(np.uint8).tobytes()).decode(
        "ascii"
    )


def _rounded(values: np.ndarray, digits: int = 4) -> list[float | None]:
    return [None if not np.isfinite(v) else round(float(v), digits) for v in np.asarray(values, np.float64)]


def _action_text(action: np.ndarray) -> str:
    action = np.asarray(action)
    return str(action.item()) if action.size == 1 else np.array2string(action, precision=2)


def page_payload(data: MovieData, fps: float) -> dict[str, Any]:
    """Everything the page shows, as JSON-ready values."""
    payload: dict[str, Any] = {
        "meta": {
            "checkpoint": data.checkpoint,
            "policy": data.policy_id,
            "method": data.method,
            "options": {k: repr(v) for k, v in data.options.items()},
            "return": round(data.episode_return, 4),
            "length": len(data),
            "truncated": data.truncated_by_max_steps,
            "fps": fps,
            "outputs": data.action_output_kind,
        },
        "values": None if data.values is None else _rounded(data.values),
        "rewards": _rounded(data.rewards),
        "actions": [_action_text(a) for a in data.actions],
        "action_names": data.action_names,
        "action_outputs": [_rounded(column) for column in data.action_outputs.T],
        "bookmarks": data.bookmarks(),
        "labels": list(data.map_labels),
        "image": None,
        "vector": None,
    }
    if data.is_image:
        finite = data.observations[np.isfinite(data.observations)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        height, width = data.observations.shape[1:3]
        factor = pool_factor(height, width)
        frames = [
            Image.fromarray((newest_frame(o, low, high) * 255).astype(np.uint8), "L")
            for o in data.observations
        ]
        payload["image"] = {
            "width": width,
            "height": height,
            "map_width": -(-width // factor),
            "map_height": -(-height // factor),
            "factor": factor,
            "frames": _frames(frames),
            "actor": _map_bytes(data.actor, factor),
            "critic": None if data.critic is None else _map_bytes(data.critic, factor),
        }
    else:
        actor = data.actor.reshape(len(data), -1)
        critic = None if data.critic is None else data.critic.reshape(len(data), -1)
        rows = bar_rows(data)
        names = (
            data.feature_names
            if len(data.feature_names) == actor.shape[1]
            else [f"f{k}" for k in range(actor.shape[1])]
        )
        payload["vector"] = {
            "names": [names[k] for k in rows],
            "actor": [_rounded(actor[:, k], 5) for k in rows],
            "critic": None if critic is None else [_rounded(critic[:, k], 5) for k in rows],
            "observations": [_rounded(data.observations.reshape(len(data), -1)[:, k], 4) for k in rows],
            "frames": None if data.frames is None else _frames([Image.fromarray(f) for f in data.frames]),
        }
    return payload


def write_page(path: str, data: MovieData, fps: float, title: str) -> int:
    """Write the explorer page; returns its size in bytes."""
    blob = json.dumps(page_payload(data, fps), separators=(",", ":"), allow_nan=False)
    text = (
        TEMPLATE.replace("__TITLE__", html.escape(title))
        .replace("__DATA__", blob.replace("</", "<\\/"))
        .replace("__SCRIPT__", SCRIPT)
    )
    encoded = text.encode("utf-8")
    with open(path, "wb") as file:
        file.write(encoded)
    return len(encoded)
