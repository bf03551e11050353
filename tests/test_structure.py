"""Components of structured observation spaces follow RLlib's own flattening exactly."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from ray.rllib.models.preprocessors import get_preprocessor

from rllib_saliency.structure import component_values, components, unflatten

SPACE = gym.spaces.Dict(
    {
        "vel": gym.spaces.Box(-1, 1, (3,), np.float32),
        "pos": gym.spaces.Box(-1, 1, (2,), np.float32),
        "inventory": gym.spaces.Discrete(4),
        "camera": gym.spaces.Box(0, 1, (2, 3, 1), np.float32),
        "grid": gym.spaces.MultiDiscrete([2, 3]),
        "pair": gym.spaces.Tuple((gym.spaces.Box(0, 1, (1,), np.float32), gym.spaces.Discrete(2))),
    }
)


def test_offsets_match_rllibs_preprocessor():
    preprocessor = get_preprocessor(SPACE)(SPACE)
    parts = components(SPACE)
    assert parts[-1].stop == preprocessor.shape[0]
    for seed in range(5):
        SPACE.seed(seed)
        sample = SPACE.sample()
        flat = preprocessor.transform(sample)
        by_name = {p.name: p for p in parts}
        assert flat[by_name["pos.1"].start] == sample["pos"][1]
        assert flat[by_name["vel.2"].start] == sample["vel"][2]
        assert flat[by_name["pair.0"].start] == sample["pair"][0][0]
        inventory = by_name["inventory"]
        assert np.argmax(flat[inventory.start : inventory.stop]) == sample["inventory"]
        grid = by_name["grid.1"]
        assert np.argmax(flat[grid.start : grid.stop]) == sample["grid"][1]
        camera = by_name["camera"]
        np.testing.assert_array_equal(flat[camera.start : camera.stop], sample["camera"].reshape(-1))
    assert {p.top_key for p in parts} == set(SPACE.spaces)


def test_one_hot_components_take_the_active_slot_and_unflatten_restores_shapes():
    preprocessor = get_preprocessor(SPACE)(SPACE)
    SPACE.seed(7)
    samples = [SPACE.sample() for _ in range(3)]
    obs = np.stack([preprocessor.transform(s) for s in samples])
    values = np.arange(obs.size, dtype=np.float32).reshape(obs.shape)
    parts = components(SPACE)
    per_component = component_values(values, obs, parts, absolute=False)
    inventory = [i for i, p in enumerate(parts) if p.name == "inventory"][0]
    start = parts[inventory].start
    expected = [values[row, start + s["inventory"]] for row, s in enumerate(samples)]
    np.testing.assert_array_equal(per_component[:, inventory], expected)
    nested = unflatten(values, obs, SPACE)
    assert nested["camera"].shape == (3, 2, 3, 1) and nested["grid"].shape == (3, 2)
    np.testing.assert_array_equal(nested["inventory"], expected)
    assert isinstance(nested["pair"], tuple) and nested["pair"][0].shape == (3, 1)
