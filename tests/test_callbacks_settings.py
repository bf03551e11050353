"""SaliencyCallbacks.configure validates every option at once and pickles."""

from __future__ import annotations

import pickle

import pytest

from rllib_saliency import SaliencyCallbacks


@pytest.mark.parametrize(
    "options, message",
    [
        ({"every": 0}, "'every' must be a positive integer"),
        ({"num_samples": -3}, "'num_samples' must be a positive integer"),
        ({"methods": ("gradient", "lime")}, "'methods' has 'lime'; valid values: gradient, gradient_x_input"),
        ({"methods": "gradient"}, "'methods' must be a non-empty list"),
        ({"targets": ("action", "q")}, "'targets' has 'q'; valid values: 'action', 'action_K'"),
        (
            {"method_options": {"smoothgrad": {}}},
            "'method_options' has 'smoothgrad', which is not in 'methods'",
        ),
        ({"method_options": {"integrated_gradients": {"stepz": 3}}}, "unknown option.*stepz.*valid options"),
        ({"policies": "p0"}, "'policies' must be a non-empty list"),
        ({"feature_names": ["x", 3]}, "'feature_names' has 3"),
        ({"logdir": 5}, "'logdir' must be a path"),
        ({"max_images": -1}, "'max_images' must be an integer >= 0"),
        ({"seed": 1.5}, "'seed' must be an integer"),
    ],
)
def test_bad_options_name_the_option(options, message):
    with pytest.raises(ValueError, match=message):
        SaliencyCallbacks.configure(**options)


def test_configured_callbacks_pickle_and_build():
    factory = SaliencyCallbacks.configure(every=3, methods=("occlusion",), feature_names={"p0": ["a", "b"]})
    rebuilt = pickle.loads(pickle.dumps(factory))()
    assert isinstance(rebuilt, SaliencyCallbacks)
    assert rebuilt.settings.every == 3 and rebuilt.settings.methods == ("occlusion",)
    assert rebuilt.settings.feature_names == {"p0": ["a", "b"]}
    assert SaliencyCallbacks().settings.methods == ("gradient", "integrated_gradients")
