"""Bad input gets a clear error naming the parameter and the fix."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import rollout_observations

from rllib_saliency import explain
from rllib_saliency.errors import UnsupportedTarget


@pytest.fixture(scope="module")
def cartpole(trained):
    algo = trained("CartPole-v1")
    return algo.get_policy(), rollout_observations(algo, n=8)


def test_wrong_observation_shape(cartpole):
    policy, obs = cartpole
    with pytest.raises(ValueError, match=r"obs must have shape \(N, 4\).*got shape \(8, 3\)"):
        explain(policy, obs[:, :3])
    with pytest.raises(ValueError, match=r"obs must have shape \(N, 4\)"):
        explain(policy, obs[0])


def test_wrong_observation_dtype(cartpole):
    policy, _ = cartpole
    with pytest.raises(ValueError, match="obs must be a numeric array"):
        explain(policy, np.array([["a", "b", "c", "d"]]))


def test_unknown_method_and_option(cartpole):
    policy, obs = cartpole
    with pytest.raises(
        ValueError, match="unknown method 'saliency'; valid methods: gradient, gradient_x_input"
    ):
        explain(policy, obs, method="saliency")
    with pytest.raises(ValueError, match="unknown option.*stepz.*valid options: baseline, steps"):
        explain(policy, obs, method="integrated_gradients", stepz=3)
    with pytest.raises(ValueError, match="'steps' must be a positive integer"):
        explain(policy, obs, method="integrated_gradients", steps=0)
    with pytest.raises(ValueError, match="'baseline' must be 'zeros', 'mean' or an array"):
        explain(policy, obs, method="integrated_gradients", baseline="median")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        explain(policy, obs, batch_size=0)
    with pytest.raises(ValueError, match=r"'noise_source' must be one of \('host', 'device'\).*got 'gpu'"):
        explain(policy, obs, method="smoothgrad", noise_source="gpu")
    # A TF policy's noise is numpy's: 'device' (drawn where a torch module runs) is refused, naming the fix.
    with pytest.raises(ValueError, match=r"noise_source='device' needs.*torch RLModules.*'host'"):
        explain(policy, obs, method="smoothgrad", noise_source="device")


def test_unknown_and_out_of_range_targets(cartpole):
    policy, obs = cartpole
    with pytest.raises(ValueError, match="unknown target 'q'"):
        explain(policy, obs, target="q")
    with pytest.raises(ValueError, match="action_2.*out of range.*action_0 .. action_1"):
        explain(policy, obs, target="action_2")
    with pytest.raises(ValueError, match=r"actions must have shape \(8,\)"):
        explain(policy, obs, target="logp", actions=np.zeros(3, int))
    # A dueling Q-network's target (torch modules): TF policies refuse it, saying so.
    with pytest.raises(UnsupportedTarget, match=r"target 'advantage'.*old-API-stack TF policy"):
        explain(policy, obs, target="advantage")


def test_not_a_tensorflow_policy():
    class TorchLikePolicy:  # torch is not installed here: a stand-in that is clearly no TF policy
        framework = "torch"

    with pytest.raises(
        TypeError, match="old-API-stack TensorFlow policies.*framework 'torch'.*new API stack"
    ):
        explain(TorchLikePolicy(), np.zeros((1, 4), np.float32))
