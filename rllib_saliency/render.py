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
