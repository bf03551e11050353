"""Charts as TensorBoard shows them: tick labels that never overlap, readable fonts, honest captions."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FRAMEWORK
from matplotlib.backends.backend_agg import FigureCanvasAgg

from rllib_saliency import render
from rllib_saliency.callbacks.report import Reporter
from rllib_saliency.callbacks.settings import make_settings
from rllib_saliency.targets import describe_target

pytestmark = pytest.mark.skipif(
    FRAMEWORK != "tf2", reason="framework-independent; run once (in the tf2 process)"
)

NAMES = ["cart_position", "cart_velocity", "pole_angle", "pole_angular_velocity"]
IMAGES_DASHBOARD_WIDTH = 350  # CSS pixels of an Images-dashboard card (TensorBoard 2.x)


def label_boxes(figure, labels):
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    return [label.get_window_extent(renderer) for label in labels if label.get_text()]


def assert_apart(boxes, axis: str) -> None:
    """No two labels overlap (with a pixel of air) along ``axis``."""
    key = (lambda b: (b.x0, b.x1)) if axis == "x" else (lambda b: (b.y0, b.y1))
    spans = sorted(key(b) for b in boxes)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start - end >= 1, f"labels overlap: {spans}"


@pytest.mark.parametrize("columns", [1, 2, 5, 12, 60, 500])
@pytest.mark.parametrize("first, stride", [(1, 1), (4000, 4000), (10_000, 2_000), (1_000_012_000, 4_000_000)])
def test_evolution_step_labels_never_overlap(columns, first, stride):
    steps = [first + stride * i for i in range(columns)]
    history = np.random.default_rng(0).random((columns, 4))
    figure = render._evolution_figure(history, steps, NAMES, "default_policy / action / gradient", "x")
    axes = figure.axes[0]
    labels = axes.get_xticklabels()
    texts = [label.get_text() for label in labels]
    assert texts and len(set(texts)) == len(texts), texts  # distinct labels
    assert axes.get_xticks()[-1] == columns - 1  # the newest computation is labelled
    assert_apart(label_boxes(figure, labels), "x")
    # Labels stay short: compact numbers, never "1000012000".
    assert max(len(t) for t in texts) <= 6, texts
    assert_apart(label_boxes(figure, axes.get_yticklabels()), "y")
    figure_box = figure.bbox
    for box in label_boxes(figure, labels):  # inside the picture
        assert box.x0 >= 0 and box.x1 <= figure_box.x1


def test_step_ticks_thin_out_long_labels_and_keep_ends():
    index, labels = render.step_ticks([10_000 + 2_000 * i for i in range(5)], axis_points=120)
    assert index[0] == 0 and index[-1] == 4
    widths = [render._text_points(label, render.FONT) for label in labels]
    centres = [(i + 0.5) / 5 * 120 for i in index]
    for k in range(len(index) - 1):
        assert centres[k + 1] - centres[k] >= (widths[k] + widths[k + 1]) / 2
    assert render.step_ticks([123_456_789], 10) == ([0], ["123.5M"])
    assert render.step_ticks([], 100) == ([], [])


@pytest.mark.parametrize(
    "value, text",
    [(0, "0"), (950, "950"), (12_000, "12k"), (1_200_000, "1.2M"), (1_000_012_000, "1G"), (2.5, "2.5")],
)
def test_compact_number(value, text):
    assert render.compact_number(value) == text


def test_close_steps_get_distinct_labels():
    index, labels = render.step_ticks([1_000_000, 1_000_500, 1_001_000], axis_points=400)
    assert len(set(labels)) == len(labels) == 3, labels


@pytest.mark.parametrize("features", [4, 40, 100])
def test_importance_labels_never_overlap(features):
    names = NAMES if features == 4 else [f"sensor_{i}_reading" for i in range(features)]
    values = np.random.default_rng(1).random(features) * 1.7
    figure = render.importance_figure(values, names, "p / action / gradient", "gradient; action = ...")
    axes = figure.axes[0]
    assert_apart(label_boxes(figure, axes.get_xticklabels()), "x")
    assert_apart(label_boxes(figure, axes.get_yticklabels()), "y")


def test_sized_for_the_images_dashboard_and_fonts_survive_shrinking():
    """TensorBoard draws images 350 CSS px wide, nearest-neighbour: charts are laid out for
    that width and rendered at SCALE x, with fonts of at least 10 display pixels."""
    png, height, width = render.importance_chart(np.arange(4.0), NAMES, "t", "s")
    evolution = render.evolution_heatmap(np.ones((3, 4)), [1, 2, 3], NAMES, "t", "s")
    for _, h, w in ((png, height, width), evolution):
        assert w / render.SCALE <= IMAGES_DASHBOARD_WIDTH - 15  # never shrunk below 1/SCALE
        assert render.DPI == 72 * render.SCALE and render.FONT >= 10 and render.SCALE >= 2
        assert 0.3 <= h / w <= 1.5  # sensible aspect for four features
    figure = render._evolution_figure(np.ones((3, 4)), [1, 2, 3], NAMES, "t", "s")
    sizes = {
        label.get_fontsize() for label in figure.axes[0].get_xticklabels() + figure.axes[0].get_yticklabels()
    }
    assert min(sizes) >= 10


def test_subtitles_name_the_options_that_change_the_picture():
    ig = render.chart_subtitle("integrated_gradients", None, "action")
    assert "baseline=zeros" in ig and "steps=32" in ig and "greedy action's logit" in ig
    assert "baseline=mean, steps=64" in render.method_caption(
        "integrated_gradients", {"baseline": "mean", "steps": 64}
    )
    assert "custom array" in render.method_caption("integrated_gradients", {"baseline": np.zeros(4)})
    smooth = render.method_caption("smoothgrad", {"noise_level": 0.1})
    assert "noise=0.1×feature range" in smooth and "n_samples=25" in smooth
    assert render.method_caption("occlusion", None) == "occlusion: baseline=mean"
    assert "patch_size=auto" not in render.method_caption("occlusion", None, image=True)
    assert "fill=blur" in render.method_caption("occlusion", None, image=True)
    assert "summing to 1" in render.chart_subtitle("gradient", None, "value", evolution=True)
    assert "value function" in describe_target("value")
    assert "action 2" in describe_target("action_2")
    # Given the kind of model, the subtitle says what this model's number is (targets.describe_target).
    assert describe_target("action", "q") == "action = Q(s, a*), the greedy action's Q-value"
    q_text = describe_target("action", "q")
    q_chart = render.chart_subtitle("gradient", None, "action", target_text=q_text)
    assert q_chart == "gradient; action = Q(s, a*), the greedy action's Q-value"


def captured(monkeypatch):
    figures = []
    original = render._png

    def keep(figure):
        figures.append(figure)
        return original(figure)

    monkeypatch.setattr(render, "_png", keep)
    return figures


def test_activation_chart_says_what_it_maximised_and_labels_its_axis(monkeypatch):
    figures = captured(monkeypatch)
    subtitle = describe_target("action_1") + "; reached 3.2"
    render.activation_chart(
        np.ones(4), np.zeros(4), -np.ones(4), np.ones(4), NAMES, "p: input maximising action_1", subtitle
    )
    figure = figures[-1]
    assert figure.axes[0].get_xlabel() == "feature value (observation units)"
    texts = " ".join(t.get_text() for t in figure.texts)
    assert "action_1" in texts and "logit of action 1" in texts.replace("\n", " ")
    assert_apart(label_boxes(figure, figure.axes[0].get_xticklabels()), "x")


def test_heading_text_is_inside_the_picture(monkeypatch):
    figures = captured(monkeypatch)
    long = render.chart_subtitle("integrated_gradients", None, "action_3", evolution=True)
    render.evolution_heatmap(
        np.ones((2, 4)), [1, 2], NAMES, "a_long_policy_name / action_3 / integrated_gradients", long
    )
    figure = figures[-1]
    for box in label_boxes(figure, figure.texts):
        assert box.x0 >= 0 and box.x1 <= figure.bbox.x1 and box.y1 <= figure.bbox.y1
    # The heading does not run into the axes.
    axes_top = figure.axes[0].get_window_extent().y1
    assert min(box.y0 for box in label_boxes(figure, figure.texts)) >= axes_top


def test_config_text_lists_the_method_options_in_effect():
    settings = make_settings(
        methods=("gradient", "integrated_gradients", "smoothgrad"),
        method_options={"smoothgrad": {"noise_level": 0.2}},
    )
    meanings = {("p0", "action"): "action = the greedy action's logit", ("p1", "value"): "value = V(s)"}
    text = Reporter(settings, stack=None)._config_markdown(meanings)
    assert "| integrated_gradients | `{'baseline': 'zeros', 'steps': 32}` |" in text
    assert "'noise_level': 0.2" in text and "'n_samples': 25" in text
    assert "- p0: action = the greedy action's logit\n- p1: value = V(s)" in text and "summing to 1" in text


def test_a_policy_whose_model_cannot_be_read_gets_every_kinds_meaning_and_one_error():
    """The charts still say what the target is (every kind's meaning) when the driver cannot
    read the policy's model; the failure is reported once, never raised into training."""
    reporter = Reporter(make_settings(), stack=None)  # (None: reading the model raises)
    for _ in range(2):
        assert reporter._target_text(None, "p0", "action") == describe_target("action")
    assert reporter.errors.total == 1
