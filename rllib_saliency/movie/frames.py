"""GIF frames of a saliency movie, drawn with Pillow.

Image observations follow Greydanus et al. (2018): the newest frame of the
observation in grey, the actor's saliency added to the blue channel and the
critic's to the red one. Vector observations: the environment's own rendering
(if any) beside per-feature bars, actor in blue and critic in red. Every frame
has a caption with step, action, value and reward. Maps are scaled per episode
(one scale per head for the whole movie), so brightness compares across steps;
image maps are average-pooled to at most ``MAP_SIDE`` cells a side and scaled up
bilinearly (smooth blobs as in Greydanus' movies, and GIFs that compress).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rllib_saliency.movie.data import MovieData

CAPTION = 22  # pixels of the caption bar
IMAGE_SIDE = 252  # image observations are scaled up to about this longer side
MAP_SIDE = 28  # image maps are average-pooled to at most this many cells a side, then smoothed up
PANEL_HEIGHT = 240  # vector observations: height of the rendering and of the bars
BAR_WIDTH = 340
MAX_BARS = 16
ACTOR_RGB = (40, 110, 255)
CRITIC_RGB = (235, 50, 40)


def _font(size: int = 13) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size only
        return ImageFont.load_default()


def map_scale(maps: np.ndarray) -> float:
    """One scale for a head's maps over the whole episode: a high percentile of |values|."""
    finite = np.abs(maps[np.isfinite(maps)])
    if finite.size == 0:
        return 1.0
    scale = float(np.percentile(finite, 99.9))
    return scale if scale > 0 else float(finite.max()) or 1.0


def image_heat(values: np.ndarray, scale: float) -> np.ndarray:
    """An image observation's ``(H, W, C)`` attribution as an ``(H, W)`` intensity in [0, 1]."""
    heat = np.abs(np.nan_to_num(values)).sum(axis=-1)
    return np.clip(heat / (scale * values.shape[-1]), 0.0, 1.0)


def newest_frame(observation: np.ndarray, low: float, high: float) -> np.ndarray:
    """The last channel of an ``(H, W, C)`` observation (the newest of stacked frames) in [0, 1]."""
    frame = observation[..., -1].astype(np.float32)
    return np.clip((frame - low) / (high - low), 0.0, 1.0) if high > low else np.zeros_like(frame)


def pool_factor(height: int, width: int) -> int:
    """How many pixels a side one map cell covers, so that maps have at most ``MAP_SIDE`` cells a side."""
    return max(1, -(-max(height, width) // MAP_SIDE))


def pooled(heat: np.ndarray, factor: int) -> np.ndarray:
    """``(..., H, W)`` average-pooled by ``factor`` (edges padded with zeros)."""
    h, w = heat.shape[-2:]
    ph, pw = -h % factor, -w % factor
    padded = np.pad(heat, [(0, 0)] * (heat.ndim - 2) + [(0, ph), (0, pw)])
    shape = (*heat.shape[:-2], (h + ph) // factor, factor, (w + pw) // factor, factor)
    return padded.reshape(shape).mean(axis=(-3, -1))


def smooth(heat: np.ndarray, factor: int, size: tuple[int, int]) -> np.ndarray:
    """A map pooled by ``factor`` and scaled up bilinearly to ``size`` (width, height) pixels, in [0, 1]."""
    cells = pooled(heat, factor)
    image = Image.fromarray(cells.astype(np.float32), "F")
    h, w = heat.shape
    full = (round(size[0] * cells.shape[1] * factor / w), round(size[1] * cells.shape[0] * factor / h))
    return np.clip(np.asarray(image.resize(full, Image.BILINEAR))[: size[1], : size[0]], 0.0, 1.0)


def overlay_rgb(frame: np.ndarray, actor: np.ndarray | None, critic: np.ndarray | None) -> np.ndarray:
    """Greydanus' overlay: grey frame, actor heat added to blue, critic heat to red; uint8."""
    rgb = np.repeat(0.8 * frame[..., None], 3, axis=-1)
    if actor is not None:
        rgb[..., 2] += actor
    if critic is not None:
        rgb[..., 0] += critic
    return (np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)


def _caption(data: MovieData, t: int) -> str:
    action = np.asarray(data.actions[t])
    action_text = str(action.item()) if action.size == 1 else np.array2string(action, precision=2)
    value = "n/a" if data.values is None else f"{float(data.values[t]):.3f}"
    return (
        f"step {t}/{len(data) - 1}  action {action_text}  value {value}  reward {float(data.rewards[t]):.2f}"
    )


def _with_caption(image: Image.Image, text: str) -> Image.Image:
    framed = Image.new("RGB", (image.width, image.height + CAPTION), (0, 0, 0))
    framed.paste(image, (0, 0))
    ImageDraw.Draw(framed).text((6, image.height + 4), text, fill=(255, 255, 255), font=_font())
    return framed


def bar_rows(data: MovieData) -> list[int]:
    """The features shown as bars: all, or the ``MAX_BARS`` with the largest mean |actor| + |critic|."""
    flat = np.abs(np.nan_to_num(data.actor.reshape(len(data), -1))).mean(axis=0)
    if data.critic is not None:
        flat = flat + np.abs(np.nan_to_num(data.critic.reshape(len(data), -1))).mean(axis=0)
    if len(flat) <= MAX_BARS:
        return list(range(len(flat)))
    return sorted(int(k) for k in np.argsort(-flat, kind="stable")[:MAX_BARS])


def draw_bars(
    actor: np.ndarray,
    critic: np.ndarray | None,
    names: list[str],
    rows: list[int],
    scales: tuple[float, float],
    labels: tuple[str, str],
    height: int = PANEL_HEIGHT,
) -> Image.Image:
    """Signed per-feature bars of one step: actor (blue, upper) and critic (red, lower) per row,
    under ``labels`` (MovieData.map_labels)."""
    panel = Image.new("RGB", (BAR_WIDTH, height), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    font = _font(12)
    draw.text((6, 4), labels[0], fill=ACTOR_RGB, font=font)
    draw.text((max(50, 18 + draw.textlength(labels[0], font=font)), 4), labels[1], fill=CRITIC_RGB, font=font)
    top, label_width = 22, 96
    row = (height - top - 4) / max(len(rows), 1)
    middle = label_width + (BAR_WIDTH - label_width - 8) / 2
    half = (BAR_WIDTH - label_width - 8) / 2
    draw.line([(middle, top), (middle, height - 4)], fill=(150, 150, 150))
    for i, k in enumerate(rows):
        y = top + i * row
        draw.text((4, y + row / 2 - 7), str(names[k])[:14], fill=(0, 0, 0), font=font)
        for j, (values, scale, colour) in enumerate(
            ((actor, scales[0], ACTOR_RGB), (critic, scales[1], CRITIC_RGB))
        ):
            if values is None:
                continue
            v = float(np.nan_to_num(values[k]))
            length = max(-1.0, min(1.0, v / scale)) * half
            y0 = y + 2 + j * (row - 4) / 2
            y1 = y0 + max((row - 4) / 2 - 1, 1)
            draw.rectangle([min(middle, middle + length), y0, max(middle, middle + length), y1], fill=colour)
    return panel


def render_frames(data: MovieData) -> Iterator[Image.Image]:
    """One RGB frame per step."""
    actor_scale = map_scale(data.actor)
    critic_scale = map_scale(data.critic) if data.critic is not None else 1.0
    if data.is_image:
        finite = data.observations[np.isfinite(data.observations)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        height, width = data.observations.shape[1:3]
        zoom = max(1, round(IMAGE_SIDE / max(height, width)))
        size, factor = (width * zoom, height * zoom), pool_factor(height, width)
        for t in range(len(data)):
            frame = Image.fromarray((newest_frame(data.observations[t], low, high) * 255).astype(np.uint8))
            rgb = overlay_rgb(
                np.asarray(frame.resize(size, Image.NEAREST), np.float32) / 255,
                smooth(image_heat(data.actor[t], actor_scale), factor, size),
                smooth(image_heat(data.critic[t], critic_scale), factor, size)
                if data.critic is not None
                else None,
            )
            yield _with_caption(Image.fromarray(rgb), _caption(data, t))
        return
    actor = data.actor.reshape(len(data), -1)
    critic = data.critic.reshape(len(data), -1) if data.critic is not None else None
    names = (
        data.feature_names
        if len(data.feature_names) == actor.shape[1]
        else [f"f{k}" for k in range(actor.shape[1])]
    )
    rows = bar_rows(data)
    scales = (
        float(np.nanmax(np.abs(actor[:, rows]))) or 1.0,
        float(np.nanmax(np.abs(critic[:, rows]))) or 1.0 if critic is not None else 1.0,
    )
    for t in range(len(data)):
        bars = draw_bars(
            actor[t], None if critic is None else critic[t], names, rows, scales, data.map_labels
        )
        if data.frames is not None:
            frame = Image.fromarray(data.frames[t])
            frame = frame.resize((max(1, round(frame.width * PANEL_HEIGHT / frame.height)), PANEL_HEIGHT))
            image = Image.new("RGB", (frame.width + bars.width, PANEL_HEIGHT), (255, 255, 255))
            image.paste(frame, (0, 0))
            image.paste(bars, (frame.width, 0))
        else:
            image = bars
        yield _with_caption(image, _caption(data, t))


def write_gif(path: str, frames: Iterator[Image.Image], fps: float) -> int:
    """An endlessly looping GIF at ``fps`` frames per second; returns the number of frames."""
    first = next(frames)
    rest = [frame.quantize(colors=64, method=Image.Quantize.FASTOCTREE) for frame in frames]
    first.quantize(colors=64, method=Image.Quantize.FASTOCTREE).save(
        path,
        save_all=True,
        append_images=rest,
        duration=max(20, round(1000 / fps)),
        loop=0,
        optimize=False,
        disposal=1,
    )
    return 1 + len(rest)
