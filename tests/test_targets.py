"""Target names parsed against action spaces."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from rllib_saliency.targets import parse_target, resolve_target

DISCRETE = gym.spaces.Discrete(3)
BOX = gym.spaces.Box(-1, 1, (2,), np.float32)


def test_action_means_greedy_logit_for_discrete_and_dimension_0_for_box():
    logits = np.array([[0.0, 2.0, 1.0], [3.0, 0.0, 1.0]], np.float32)
    resolved = resolve_target(parse_target("action", DISCRETE), 2, logits, np.array([1, 0]), None)
    np.testing.assert_array_equal(resolved.columns, [1, 0])
    assert parse_target("action", BOX).column == 0
    assert parse_target("action_1", BOX).column == 1


def test_logp_defaults_to_the_greedy_action():
    greedy = np.array([2, 1])
    resolved = resolve_target(parse_target("logp", DISCRETE), 2, np.zeros((2, 3)), greedy, None)
    np.testing.assert_array_equal(resolved.actions, greedy)
    chosen = np.array([0, 0])
    np.testing.assert_array_equal(
        resolve_target(parse_target("logp", DISCRETE), 2, np.zeros((2, 3)), greedy, chosen).actions, chosen
    )


@pytest.mark.parametrize(
    "name, space, message",
    [
        ("action_3", DISCRETE, "out of range.*action_0 .. action_2"),
        ("action_2", BOX, "out of range.*action_0 .. action_1"),
        ("actions", DISCRETE, "unknown target 'actions'"),
        ("action", gym.spaces.MultiBinary(3), "supports Discrete, MultiDiscrete and Box"),
        ("action_2", gym.spaces.MultiDiscrete([3, 2]), "out of range.*action_0 .. action_1"),
    ],
)
def test_bad_targets(name, space, message):
    with pytest.raises(ValueError, match=message):
        parse_target(name, space)


def test_multi_discrete_sub_actions_use_their_own_logits():
    space = gym.spaces.MultiDiscrete([3, 2])
    logits = np.array([[0.0, 5.0, 1.0, 2.0, 9.0], [3.0, 0.0, 1.0, 8.0, 0.0]], np.float32)
    first = resolve_target(parse_target("action", space), 2, logits, None, None)
    np.testing.assert_array_equal(first.columns, [1, 0])
    second = resolve_target(parse_target("action_1", space), 2, logits, None, None)
    np.testing.assert_array_equal(second.columns, [4, 3])  # offset 3 + argmax within [3, 5)


def test_advantage_and_sac_value_resolve_their_action_at_the_given_observations():
    from rllib_saliency.targets import needs_forward

    advantage = parse_target("advantage", DISCRETE)
    assert advantage.kind == "advantage" and needs_forward(advantage, None)
    greedy = np.array([2, 0])
    resolved = resolve_target(advantage, 2, np.zeros((2, 3)), greedy, None)
    assert resolved.kind == "advantage"
    np.testing.assert_array_equal(resolved.columns, greedy)
    chosen = np.array([1, 1])
    np.testing.assert_array_equal(resolve_target(advantage, 2, None, None, chosen).columns, chosen)
    # A value that is a Q-value at an action (SAC): the greedy action, unless actions are given.
    value = parse_target("value", DISCRETE)
    assert not needs_forward(value, None) and needs_forward(value, None, value_needs_action=True)
    assert not needs_forward(value, chosen, value_needs_action=True)
    actions = np.array([[0.5], [-0.25]], np.float32)
    at_greedy = resolve_target(value, 2, None, actions, None, value_needs_action=True)
    np.testing.assert_array_equal(at_greedy.actions, actions)
    assert resolve_target(value, 2, None, None, None).actions is None
