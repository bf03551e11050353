"""Target names parsed against action spaces."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from rllib_saliency.targets import describe_target, parse_target, resolve_target

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


MULTI = gym.spaces.MultiDiscrete([2, 3])


@pytest.mark.parametrize(
    "target, kind, space, meaning",
    [
        ("action", "policy", DISCRETE, "action = the greedy action's logit"),
        ("action_2", "policy", DISCRETE, "action_2 = the logit of action 2"),
        ("action_1", "policy", BOX, "action_1 = the Gaussian mean of action dimension 1"),
        ("action", "policy", BOX, "action = the Gaussian mean of action dimension 0"),
        ("action_1", "policy", MULTI, "action_1 = the logit of sub-action 1's greedy choice"),
        ("value", "policy", DISCRETE, "value = V(s), the value function's estimate"),
        ("logp", "policy", BOX, "logp = log-probability of the action taken"),
        ("action", "q", DISCRETE, "action = Q(s, a*), the greedy action's Q-value"),
        ("action_1", "q", DISCRETE, "action_1 = Q(s, 1), the Q-value of action 1"),
        ("value", "q", DISCRETE, "value = max over actions of Q(s, a)"),
        ("advantage", "q", DISCRETE, "advantage = Q(s, a*) - mean over actions of Q(s, a) (dueling Q-network)"),  # noqa: E501
        ("action_0", "sac", BOX, "action_0 = the Gaussian mean of action dimension 0, before squashing"),
        ("value", "sac", BOX, "value = min(Q1, Q2) at the squashed greedy action, held fixed"),
        ("logp", "sac", BOX, "logp = log-probability of the action taken, under the squashed Gaussian"),
    ],
)
def test_each_kind_of_model_says_what_its_targets_are(target, kind, space, meaning):
    """A chart says what its number is for the model it shows: a Q-network's action is its
    Q-value, a policy's is a logit or a Gaussian mean, never 'X (Q-networks: Y)'."""
    assert describe_target(target, kind, space) == meaning
    if kind != "q":
        assert "Q-network" not in meaning and "Q-value" not in meaning
    if kind == "q" or isinstance(space, gym.spaces.Box):
        assert "logit" not in meaning


def test_an_unknown_model_gets_every_kind_named():
    assert describe_target("action") == "action = the greedy action's logit (Q-networks: its Q-value)"
    assert "SAC: min twin Q" in describe_target("value")
    assert describe_target("action_2").startswith("action_2 = output 2 of the action distribution")
