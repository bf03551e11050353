"""PNG images for TensorBoard: per-feature importance bars and the features × iterations heatmap.

Matplotlib's object API with the Agg canvas (no pyplot, no global state, no
display), so rendering is safe on a Ray driver.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

MAX_BARS = 40  # beyond this a bar chart stops being readable: show the largest ones
DPI = 80


def _fit_margins(figure: Figure, labels: Sequence[str], right: float = 0.97) -> None:
    """Fixed margins from the longest label: much cheaper than ``tight_layout``."""
    width_inches = figure.get_figwidth()
    label_inches = 0.25 + 0.075 * max((len(label) for label in labels), default=1)
    height_inches = figure.get_figheight()
    figure.subplots_adjust(
        left=min(0.5, label_inches / width_inches),
        right=right,
        top=1 - 0.35 / height_inches,
        bottom=0.55 / height_inches,
    )


def _png(figure: Figure) -> tuple[bytes, int, int]:
    canvas = FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    canvas.print_png(buffer)
    width, height = canvas.get_width_height()
    return buffer.getvalue(), height, width


def importance_chart(values: np.ndarray, names: Sequence[str], title: str) -> tuple[bytes, int, int]:
    """Horizontal bars of per-feature mean |attribution|, in feature order.

    Feature order (not sorted) keeps every bar in the same place from one
    training iteration to the next, so TensorBoard's step slider shows change.
    With more than ``MAX_BARS`` features, the largest ones are shown.
    """
    values = np.asarray(values, np.float64)
    index = np.arange(len(values))
    if len(values) > MAX_BARS:
        index = np.sort(np.argsort(values)[-MAX_BARS:])
        title += f" (top {MAX_BARS} of {len(values)})"
    figure = Figure(figsize=(6.4, 1.2 + 0.28 * len(index)), dpi=DPI)
    axes = figure.add_subplot()
    positions = np.arange(len(index))
    axes.barh(positions, values[index], color="tab:orange")
    axes.set_yticks(positions, [names[i] for i in index], fontsize=9)
    axes.invert_yaxis()
    axes.set_xlabel("mean |attribution|")
    axes.set_title(title, fontsize=10)
    axes.grid(axis="x", alpha=0.3)
    _fit_margins(figure, [names[i] for i in index])
    return _png(figure)


def evolution_heatmap(
    history: np.ndarray, steps: Sequence[int], names: Sequence[str], title: str
) -> tuple[bytes, int, int]:
    """Features × computations heatmap of each feature's share of total mean |attribution|.

    Columns are normalised to sum to 1 so that a shift of attention between
    features shows even while the overall gradient scale changes in training.
    """
    history = np.asarray(history, np.float64)  # (iterations, features)
    totals = history.sum(axis=1, keepdims=True)
    shares = np.divide(history, totals, out=np.zeros_like(history), where=totals > 0)
    index = np.arange(history.shape[1])
    if len(index) > MAX_BARS:
        index = np.sort(np.argsort(shares[-1])[-MAX_BARS:])
    figure = Figure(figsize=(6.4, 1.6 + 0.25 * len(index)), dpi=DPI)
    axes = figure.add_subplot()
    image = axes.imshow(shares[:, index].T, aspect="auto", cmap="viridis", interpolation="nearest", vmin=0)
    axes.set_yticks(np.arange(len(index)), [names[i] for i in index], fontsize=9)
    ticks = np.unique(np.linspace(0, len(steps) - 1, min(len(steps), 8)).astype(int))
    axes.set_xticks(ticks, [str(steps[t]) for t in ticks], fontsize=8)
    axes.set_xlabel("step")
    axes.set_title(title, fontsize=10)
    _fit_margins(figure, [names[i] for i in index], right=0.88)
    figure.colorbar(image, ax=axes, label="share of mean |attribution|", fraction=0.05, pad=0.02)
    return _png(figure)


def _unit_range(image: np.ndarray) -> np.ndarray:
    """Rescale to [0, 1] by the image's own min and max: uint8 frames, floats in [0, 1]
    and values beyond either range all render the same way."""
    image = np.asarray(image, np.float64)
    low, high = float(image.min()), float(image.max())
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


def _background(observation: np.ndarray, channel: int | None = None) -> np.ndarray:
    """An RGB background: the observation itself if it has 3 channels, else one channel
    (the newest frame of a frame stack by default) in grey."""
    if channel is None and observation.shape[-1] == 3:
        return _unit_range(observation)
    frame = observation[..., observation.shape[-1] - 1 if channel is None else channel]
    return np.repeat(_unit_range(frame)[..., None], 3, axis=-1)


def overlay(background: np.ndarray, heat: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Alpha-blend the 'inferno' colour of ``heat`` (in [0, 1]) over an RGB background; the
    blend weight grows with the heat, so unimportant pixels show the frame."""
    from matplotlib import colormaps

    colour = colormaps["inferno"](heat)[..., :3]
    weight = alpha * heat[..., None]
    return (1 - weight) * background + weight * colour


def saliency_grid(
    observations: np.ndarray, maps: np.ndarray, title: str, per_frame: bool = False
) -> tuple[bytes, int, int]:
    """One row per sample: the frame with the saliency heatmap overlaid, the heatmap alone,
    and with ``per_frame`` each stacked frame with its own map.

    Normalisation is per sample: the heatmap is mean |attribution| over channels divided
    by that sample's maximum, so each row uses the full colour range (compare rows by
    pattern, not brightness). Per-frame maps share their sample's maximum, so frames of
    one sample are comparable.
    """
    from matplotlib import colormaps

    rows = len(observations)
    channels = observations.shape[-1]
    frames = list(range(channels)) if per_frame else []
    columns = 2 + len(frames)
    figure = Figure(figsize=(1.9 * columns, 0.65 + 1.9 * rows), dpi=DPI)
    for row, (observation, attribution) in enumerate(zip(observations, maps, strict=True)):
        magnitude = np.abs(np.asarray(attribution, np.float64))
        heat = magnitude.mean(axis=-1)
        heat = heat / heat.max() if heat.max() > 0 else heat
        panels = [
            ("overlay", overlay(_background(observation), heat)),
            ("|attribution|", colormaps["inferno"](heat)),
        ]
        scale = magnitude.max()
        for frame in frames:
            frame_heat = magnitude[..., frame] / scale if scale > 0 else magnitude[..., frame]
            panels.append((f"frame {frame}", overlay(_background(observation, frame), frame_heat)))
        for column, (label, picture) in enumerate(panels):
            axes = figure.add_subplot(rows, columns, row * columns + column + 1)
            axes.imshow(picture, interpolation="nearest")
            axes.set_axis_off()
            if row == 0:
                axes.set_title(label, fontsize=8)
    figure.suptitle(title, fontsize=9)
    figure.subplots_adjust(
        left=0.01, right=0.99, bottom=0.01, top=1 - 0.6 / figure.get_figheight(), wspace=0.04, hspace=0.04
    )
    return _png(figure)


def activation_chart(
    inputs: np.ndarray, mean: np.ndarray, low: np.ndarray, high: np.ndarray, names: Sequence[str], title: str
) -> tuple[bytes, int, int]:
    """Vector observations: the optimised input next to the data mean, per feature, over the box."""
    count = len(names)
    figure = Figure(figsize=(6.4, 1.4 + 0.42 * count), dpi=80)
    axes = figure.add_subplot()
    positions = np.arange(count)
    axes.barh(positions - 0.2, mean, height=0.4, color="tab:blue", label="data mean")
    axes.barh(positions + 0.2, inputs, height=0.4, color="tab:orange", label="optimised input")
    axes.scatter(low, positions, marker="|", color="grey", s=120, label="search box")
    axes.scatter(high, positions, marker="|", color="grey", s=120)
    axes.set_yticks(positions, list(names), fontsize=9)
    axes.invert_yaxis()
    axes.axvline(0.0, color="black", linewidth=0.6)
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8, loc="best")
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return _png(figure)


def activation_images(
    inputs: np.ndarray, mean: np.ndarray, low: np.ndarray, high: np.ndarray, title: str
) -> tuple[bytes, int, int]:
    """Image observations: the data mean and the optimised input, one column per channel (up to 4),
    on the search box's grey scale (so both pictures are comparable)."""
    import textwrap

    channels = min(inputs.shape[-1], 4)
    figure = Figure(figsize=(max(3.6, 1.9 * channels + 0.4), 4.8), dpi=80)
    for row, (label, picture) in enumerate((("data mean", mean), ("optimised", inputs))):
        for channel in range(channels):
            axes = figure.add_subplot(2, channels, row * channels + channel + 1)
            axes.imshow(
                picture[..., channel],
                cmap="gray",
                interpolation="nearest",
                vmin=float(low[..., channel].min()),
                vmax=float(high[..., channel].max()),
            )
            axes.set_xticks([])
            axes.set_yticks([])
            axes.set_title(f"{label}, channel {channel}", fontsize=7)
    figure.suptitle(textwrap.fill(title, 40), fontsize=8)
    figure.subplots_adjust(top=0.84, hspace=0.25)
    return _png(figure)
