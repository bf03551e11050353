"""PNG images for TensorBoard: per-feature importance bars and the features × iterations heatmap.

Matplotlib's object API with the Agg canvas (no pyplot, no global state, no
display), so rendering is safe on a Ray driver.

Rendered for the size TensorBoard shows them. The Images dashboard draws every
image 350 CSS pixels wide and the Time Series cards fit it to a short box, both
with ``image-rendering: pixelated`` (nearest neighbour): shrinking drops whole
pixel columns and rows, which erases one-pixel strokes of small text
("po e_angle"). So charts are laid out for a ~330-pixel display width (points
and inches below) and rasterised at ``SCALE`` times that, with fonts large
enough that every stroke is at least ``SCALE`` pixels wide and survives being
shown at 1/``SCALE`` of its size (and looks sharp on high-density screens).
Tick labels are thinned until none overlap.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rllib_saliency.targets import describe_target

MAX_BARS = 40  # beyond this a bar chart stops being readable: show the largest ones
SCALE = 2  # raster pixels per display pixel (see the module docstring)
DPI = 72 * SCALE  # so one point of layout is one display pixel
WIDTH = 4.6  # inches of layout: 331 display pixels, 662 raster pixels
FONT = 10  # points = display pixels: tick labels, axis labels
TITLE_FONT = 11
SUBTITLE_FONT = 9
CHAR_WIDTH = 0.62  # average glyph width of DejaVu Sans, as a fraction of the font size
LINE = 1.35  # line height, as a multiple of the font size


def _wrap(text: str, font: float, width_points: float) -> list[str]:
    """``text`` wrapped to fit ``width_points`` at ``font`` points (estimated glyph width)."""
    columns = max(10, int(width_points / (CHAR_WIDTH * font)))
    return [line for paragraph in text.split("\n") for line in textwrap.wrap(paragraph, columns) or [""]]


def _heading(figure: Figure, title: str, subtitle: str = "") -> float:
    """Title and wrapped subtitle at the top of the figure; returns their height in inches."""
    width_points = figure.get_figwidth() * 72 - 8
    title_lines = _wrap(title, TITLE_FONT, width_points)
    subtitle_lines = _wrap(subtitle, SUBTITLE_FONT, width_points) if subtitle else []
    top = figure.get_figheight() * 72 - 4  # points from the bottom
    figure.text(
        0.5,
        top / 72 / figure.get_figheight(),
        "\n".join(title_lines),
        ha="center",
        va="top",
        fontsize=TITLE_FONT,
        fontweight="bold",
        linespacing=1.15,
    )
    top -= len(title_lines) * TITLE_FONT * LINE
    if subtitle_lines:
        figure.text(
            0.5,
            top / 72 / figure.get_figheight(),
            "\n".join(subtitle_lines),
            ha="center",
            va="top",
            fontsize=SUBTITLE_FONT,
            color="#333333",
            linespacing=1.15,
        )
        top -= len(subtitle_lines) * SUBTITLE_FONT * LINE
    return (figure.get_figheight() * 72 - top + 4) / 72


def _heading_inches(title: str, subtitle: str, width: float = WIDTH) -> float:
    width_points = width * 72 - 8
    lines = len(_wrap(title, TITLE_FONT, width_points)) * TITLE_FONT * LINE
    if subtitle:
        lines += len(_wrap(subtitle, SUBTITLE_FONT, width_points)) * SUBTITLE_FONT * LINE
    return (lines + 8) / 72


def _label_inches(labels: Sequence[str], font: float = FONT) -> float:
    return (CHAR_WIDTH * font * max((len(label) for label in labels), default=1) + 10) / 72


def _png(figure: Figure) -> tuple[bytes, int, int]:
    canvas = FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    canvas.print_png(buffer)
    width, height = canvas.get_width_height()
    return buffer.getvalue(), height, width


def compact_number(value: float, digits: int = 2) -> str:
    """A short tick label: 950, 12k, 1.25M (``digits`` significant decimals at most)."""
    magnitude = abs(value)
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= threshold:
            text = f"{value / threshold:.{digits}f}".rstrip("0").rstrip(".")
            return f"{text}{suffix}"
    return f"{value:.{digits}f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def _text_points(label: str, font: float) -> float:
    return CHAR_WIDTH * font * len(label)


def step_ticks(steps: Sequence[int], axis_points: float, font: float = FONT) -> tuple[list[int], list[str]]:
    """Which columns of the evolution heatmap get a step label, and the labels.

    Columns are evenly spread over ``axis_points`` (their centres at
    ``(i + 0.5) / n``). Returns the most evenly spaced columns (first and newest
    included) whose compact labels (``compact_number``) leave at least one font
    size of space between neighbours; with room for one label only, the newest
    column. Labels get more digits where fewer would show two ticks alike.
    """
    count = len(steps)
    if count == 0:
        return [], []
    gap = font
    for ticks in range(min(count, 12), 1, -1):
        index = sorted({int(round(i)) for i in np.linspace(0, count - 1, ticks)})
        labels = _distinct_labels([steps[i] for i in index])
        centres = [(i + 0.5) / count * axis_points for i in index]
        widths = [_text_points(label, font) for label in labels]
        if all(
            centres[k + 1] - centres[k] >= (widths[k] + widths[k + 1]) / 2 + gap
            for k in range(len(index) - 1)
        ):
            return index, labels
    return [count - 1], _distinct_labels([steps[-1]])


def _distinct_labels(values: Sequence[float]) -> list[str]:
    """Compact labels with as few digits as keep different values apart (at most 4)."""
    for digits in range(1, 5):
        labels = [compact_number(v, digits) for v in values]
        if len(set(labels)) == len(set(values)):
            return labels
    return [str(v) for v in values]


def _value_ticks(axes: Any, axis_points: float) -> None:
    """At most as many value ticks on the x axis as labels like "0.25" fit without crowding."""
    from matplotlib.ticker import MaxNLocator

    bins = max(2, int(axis_points // (_text_points("0.000", FONT) + 2 * FONT)))
    axes.xaxis.set_major_locator(MaxNLocator(nbins=bins, min_n_ticks=2))


METHOD_OPTIONS_SHOWN = {
    # The options that change the picture, as they are named in the subtitle.
    "smoothgrad": ("noise_level", "n_samples"),
    "integrated_gradients": ("baseline", "steps"),
    "occlusion": ("baseline",),
}
IMAGE_OCCLUSION_OPTIONS = ("patch_size", "stride", "fill")

def _option_text(name: str, value: Any) -> str:
    if name == "baseline" and not isinstance(value, str):
        return "baseline=custom array"
    if name == "noise_level":
        return f"noise={value:g}×feature range"
    if name == "patch_size" and value is None:
        return "patch=auto"
    return f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"


def method_caption(method: str, options: Mapping[str, Any] | None = None, image: bool = False) -> str:
    """The method and the options that change its picture (defaults filled in), e.g.
    ``integrated_gradients: baseline=zeros, steps=32``."""
    from rllib_saliency.methods import METHODS

    known = METHODS.get(method)
    filled = {**(known.defaults if known is not None else {}), **(options or {})}
    names = METHOD_OPTIONS_SHOWN.get(method, ())
    if method == "occlusion" and image:
        names = IMAGE_OCCLUSION_OPTIONS + (("baseline",) if filled.get("fill") == "baseline" else ())
        if filled.get("fill") == "blur":
            names += ("blur_sigma",)
        if filled.get("mask") == "gaussian":  # Greydanus-style soft perturbations
            names += ("mask", "mask_sigma")
    shown = [_option_text(name, filled[name]) for name in names if name in filled]
    return f"{method}: {', '.join(shown)}" if shown else method


def chart_subtitle(
    method: str,
    options: Mapping[str, Any] | None,
    target: str,
    image: bool = False,
    evolution: bool = False,
    target_text: str | None = None,
) -> str:
    """The subtitle of a callback chart: method options, what the target is (``target_text``,
    default: ``targets.describe_target(target)``, every kind's meaning), and for the evolution
    heatmap what its columns are."""
    parts = [method_caption(method, options, image), target_text or describe_target(target)]
    if evolution:
        parts.append("each column: shares of mean |attribution|, summing to 1")
    return "; ".join(parts)


def _place_axes(figure: Figure, left: float, right: float, top: float, bottom: float) -> None:
    """Axes margins in inches (cheaper than ``tight_layout``, and predictable)."""
    width, height = figure.get_figwidth(), figure.get_figheight()
    figure.subplots_adjust(
        left=min(0.55, left / width), right=1 - right / width, top=1 - top / height, bottom=bottom / height
    )


def importance_figure(values: np.ndarray, names: Sequence[str], title: str, subtitle: str = "") -> Figure:
    """The figure ``importance_chart`` draws (a notebook displays it: ``rllib_saliency.plot``)."""
    values = np.asarray(values, np.float64)
    index = np.arange(len(values))
    if len(values) > MAX_BARS:
        index = np.sort(np.argsort(values)[-MAX_BARS:])
        title += f" (top {MAX_BARS} of {len(values)})"
    labels = [names[i] for i in index]
    heading = _heading_inches(title, subtitle)
    bottom = (FONT * LINE * 2 + 10) / 72  # tick labels and the axis label
    rows = max(len(index), 2) * FONT * 1.9 / 72
    figure = Figure(figsize=(WIDTH, heading + rows + bottom + 0.1), dpi=DPI)
    axes = figure.add_subplot()
    positions = np.arange(len(index))
    axes.barh(positions, values[index], color="tab:orange")
    axes.set_yticks(positions, labels, fontsize=FONT)
    axes.invert_yaxis()
    axes.set_xlabel("mean |attribution|", fontsize=FONT)
    axes.tick_params(axis="x", labelsize=FONT)
    axes.grid(axis="x", alpha=0.3)
    left = _label_inches(labels)
    _place_axes(figure, left=left, right=0.2, top=heading + 0.05, bottom=bottom)
    _value_ticks(axes, (WIDTH - min(left, 0.55 * WIDTH) - 0.2) * 72)
    _heading(figure, title, subtitle)
    return figure


def importance_chart(
    values: np.ndarray, names: Sequence[str], title: str, subtitle: str = ""
) -> tuple[bytes, int, int]:
    """Horizontal bars of per-feature mean |attribution|, in feature order.

    Feature order (not sorted) keeps every bar in the same place from one
    training iteration to the next, so TensorBoard's step slider shows change.
    With more than ``MAX_BARS`` features, the largest ones are shown.
    ``subtitle``: the method's options and what the target is (see ``chart_subtitle``).
    """
    return _png(importance_figure(values, names, title, subtitle))


def _evolution_figure(
    history: np.ndarray, steps: Sequence[int], names: Sequence[str], title: str, subtitle: str = ""
) -> Figure:
    history = np.asarray(history, np.float64)  # (iterations, features)
    totals = history.sum(axis=1, keepdims=True)
    shares = np.divide(history, totals, out=np.zeros_like(history), where=totals > 0)
    index = np.arange(history.shape[1])
    if len(index) > MAX_BARS:
        index = np.sort(np.argsort(shares[-1])[-MAX_BARS:])
        title += f" (top {MAX_BARS} of {history.shape[1]})"
    labels = [names[i] for i in index]
    heading = _heading_inches(title, subtitle)
    bottom = (FONT * LINE * 2 + 10) / 72
    rows = max(len(index), 2) * FONT * 1.9 / 72
    figure = Figure(figsize=(WIDTH, heading + rows + bottom + 0.1), dpi=DPI)
    axes = figure.add_subplot()
    image = axes.imshow(shares[:, index].T, aspect="auto", cmap="viridis", interpolation="nearest", vmin=0)
    axes.set_yticks(np.arange(len(index)), labels, fontsize=FONT)
    left = _label_inches(labels)
    right = 0.8  # the colour bar, its tick labels and its label
    _place_axes(figure, left=left, right=right, top=heading + 0.05, bottom=bottom)
    box = axes.get_position()
    bar = figure.add_axes((box.x1 + 0.08 / WIDTH, box.y0, 0.12 / WIDTH, box.height))
    axis_points = (WIDTH - min(left, 0.55 * WIDTH) - right) * 72
    ticks, tick_labels = step_ticks(list(steps), axis_points)
    axes.set_xticks(ticks, tick_labels, fontsize=FONT)
    axes.set_xlabel("training step", fontsize=FONT)
    colorbar = figure.colorbar(image, cax=bar)
    colorbar.set_label("share", fontsize=FONT)
    colorbar.ax.tick_params(labelsize=FONT)
    colorbar.ax.yaxis.set_major_locator(_share_locator(rows * 72))
    _heading(figure, title, subtitle)
    return figure


def _share_locator(axis_points: float) -> Any:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(nbins=max(1, int(axis_points // (FONT * 1.6))), min_n_ticks=2)


def evolution_heatmap(
    history: np.ndarray, steps: Sequence[int], names: Sequence[str], title: str, subtitle: str = ""
) -> tuple[bytes, int, int]:
    """Features × computations heatmap of each feature's share of total mean |attribution|.

    Columns are normalised to sum to 1 so that a shift of attention between
    features shows even while the overall gradient scale changes in training.
    Step labels are compact (12k, 1.2M) and thinned so that none overlap.
    """
    return _png(_evolution_figure(history, steps, names, title, subtitle))


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
    observations: np.ndarray, maps: np.ndarray, title: str, per_frame: bool = False, subtitle: str = ""
) -> tuple[bytes, int, int]:
    """``saliency_grid_figure`` as a PNG (bytes, height, width)."""
    return _png(saliency_grid_figure(observations, maps, title, per_frame, subtitle))


def saliency_grid_figure(
    observations: np.ndarray, maps: np.ndarray, title: str, per_frame: bool = False, subtitle: str = ""
) -> Figure:
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
    panel = max(1.15, WIDTH / columns)
    width = panel * columns
    heading = _heading_inches(title, subtitle, width)
    label = (SUBTITLE_FONT * LINE + 2) / 72
    figure = Figure(figsize=(width, heading + label + panel * rows), dpi=DPI)
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
        for column, (name, picture) in enumerate(panels):
            axes = figure.add_subplot(rows, columns, row * columns + column + 1)
            axes.imshow(picture, interpolation="nearest")
            axes.set_axis_off()
            if row == 0:
                axes.set_title(name, fontsize=SUBTITLE_FONT)
    figure.subplots_adjust(
        left=0.01,
        right=0.99,
        bottom=0.01,
        top=1 - (heading + label) / figure.get_figheight(),
        wspace=0.04,
        hspace=0.04,
    )
    _heading(figure, title, subtitle)
    return figure


def activation_chart(
    inputs: np.ndarray,
    mean: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    names: Sequence[str],
    title: str,
    subtitle: str = "",
) -> tuple[bytes, int, int]:
    """Vector observations: the optimised input next to the data mean, per feature, over the box.

    The x axis is the feature's value in observation units; ``subtitle`` says which
    output was maximised (see ``targets.describe_target``)."""
    count = len(names)
    heading = _heading_inches(title, subtitle)
    bottom = (FONT * LINE * 2 + SUBTITLE_FONT * LINE + 16) / 72  # ticks, axis label, legend
    figure = Figure(figsize=(WIDTH, heading + max(count, 2) * FONT * 2.6 / 72 + bottom + 0.1), dpi=DPI)
    axes = figure.add_subplot()
    positions = np.arange(count)
    axes.barh(positions - 0.2, mean, height=0.4, color="tab:blue", label="data mean")
    axes.barh(positions + 0.2, inputs, height=0.4, color="tab:orange", label="optimised input")
    axes.scatter(low, positions, marker="|", color="grey", s=120, label="search box")
    axes.scatter(high, positions, marker="|", color="grey", s=120)
    axes.set_yticks(positions, list(names), fontsize=FONT)
    axes.invert_yaxis()
    axes.axvline(0.0, color="black", linewidth=0.6)
    axes.set_xlabel("feature value (observation units)", fontsize=FONT)
    axes.tick_params(axis="x", labelsize=FONT)
    axes.grid(axis="x", alpha=0.3)
    left = _label_inches(list(names))
    _place_axes(figure, left=left, right=0.2, top=heading + 0.05, bottom=bottom)
    _value_ticks(axes, (WIDTH - min(left, 0.55 * WIDTH) - 0.2) * 72)
    figure.legend(
        *axes.get_legend_handles_labels(),
        loc="lower center",
        ncol=3,
        fontsize=SUBTITLE_FONT,
        frameon=False,
        handlelength=1.2,
        columnspacing=1.0,
        borderaxespad=0.1,
    )
    _heading(figure, title, subtitle)
    return _png(figure)


def activation_images(
    inputs: np.ndarray, mean: np.ndarray, low: np.ndarray, high: np.ndarray, title: str, subtitle: str = ""
) -> tuple[bytes, int, int]:
    """Image observations: the data mean and the optimised input, one column per channel (up to 4),
    on the search box's grey scale (so both pictures are comparable)."""
    channels = min(inputs.shape[-1], 4)
    panel = max(1.15, WIDTH / channels) if channels > 1 else 2.0
    width = max(WIDTH, panel * channels)
    heading = _heading_inches(title, subtitle, width)
    label = (SUBTITLE_FONT * LINE + 4) / 72
    figure = Figure(figsize=(width, heading + 2 * (panel + label)), dpi=DPI)
    for row, (name, picture) in enumerate((("data mean", mean), ("optimised", inputs))):
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
            axes.set_title(f"{name}, ch {channel}", fontsize=SUBTITLE_FONT)
    figure.subplots_adjust(
        left=0.02, right=0.98, bottom=0.01, top=1 - (heading + label) / figure.get_figheight(), hspace=0.2
    )
    _heading(figure, title, subtitle)
    return _png(figure)
