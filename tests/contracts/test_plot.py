"""``rllib_saliency.plot``: the chart of an explain() result a notebook displays, on the stack of
this pytest process (old: the TF policy, graph or eager; new: the learner's torch module): the
bars are the attribution's mean |values| per feature, named after the model's observation space,
and the subtitle says what the target is for the explained model."""

from __future__ import annotations

import io

import numpy as np
import pytest
from envs import env_observations
from PIL import Image

from rllib_saliency import explain, plot
from rllib_saliency.api import current_model


def heading(figure) -> str:
    """The figure's title and subtitle, as one line (the subtitle is wrapped at spaces)."""
    return " ".join(" ".join(text.get_text().split()) for text in figure.texts)


def test_the_bars_are_the_mean_abs_attribution_per_feature(trained):
    model = current_model(trained("CartPole-v1"), "default_policy")
    obs = env_observations("CartPole-v1", 32)
    obs[3, 1] = np.nan  # a row explain() leaves out (NaN): the chart leaves it out too
    attribution = explain(model, obs, "integrated_gradients", "value")
    figure = plot(attribution)
    (axes,) = figure.axes
    widths = [bar.get_width() for bar in axes.patches]
    finite = np.isfinite(attribution.target_values)
    assert finite.sum() == 31
    np.testing.assert_allclose(widths, np.abs(attribution.values[finite]).mean(axis=0), rtol=1e-6)
    assert [label.get_text() for label in axes.get_yticklabels()] == ["f0", "f1", "f2", "f3"]
    text = heading(figure)
    assert text.startswith("value / integrated_gradients")
    assert "baseline=zeros, steps=32" in text and "value = V(s), the value function's estimate" in text
    names = ["x", "x_dot", "theta", "theta_dot"]
    named = plot(attribution, names, title="cart-pole")
    assert [label.get_text() for label in named.axes[0].get_yticklabels()] == names
    assert heading(named).startswith("cart-pole")
    png = io.BytesIO()
    named.savefig(png, format="png")
    pixels = np.asarray(Image.open(png).convert("L"))
    assert pixels.shape[1] > 300 and pixels.std() > 10  # drawn, not blank


def test_box_actions_say_the_gaussian_mean(trained):
    model = current_model(trained("Pendulum-v1"), "default_policy")
    attribution = explain(model, env_observations("Pendulum-v1", 16), "gradient", "action_0")
    assert "action_0 = the Gaussian mean of action dimension 0" in heading(plot(attribution))


def test_bad_arguments_are_named(trained):
    model = current_model(trained("CartPole-v1"), "default_policy")
    obs = env_observations("CartPole-v1", 8)
    attribution = explain(model, obs)
    with pytest.raises(ValueError, match="feature_names has 3 names but the attribution has 4 features"):
        plot(attribution, ["a", "b", "c"])
    with pytest.raises(TypeError, match="plot\\(\\) takes an Attribution"):
        plot(attribution.values)
    obs[:] = np.nan
    with pytest.raises(ValueError, match="every row of the attribution is NaN"):
        plot(explain(model, obs))
