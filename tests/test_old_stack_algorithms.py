"""Old API stack, DQN and SAC with TensorFlow: RLlib 2.60 itself cannot build them (with or without
this plugin), which README states. These tests re-check that statement on every run: when RLlib
fixes one, its test fails, and that algorithm's old-stack support is to be added and tested here."""

from __future__ import annotations

import pytest
from conftest import FRAMEWORK

pytestmark = pytest.mark.slow

PRIORITIZED = {
    "type": "MultiAgentPrioritizedReplayBuffer",  # RLlib's own advice for the old stack
    "prioritized_replay_alpha": 0.6,
    "prioritized_replay_beta": 0.4,
    "prioritized_replay_eps": 1e-6,
}


def old_stack(config, env: str):
    return (
        config.api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)
        .framework(FRAMEWORK)
        .environment(env)
        .env_runners(num_env_runners=0)
        .training(replay_buffer_config=PRIORITIZED)
        .debugging(seed=0)
    )


def test_rllib_cannot_build_an_old_stack_dqn(ray_cluster):
    from ray.rllib.algorithms.dqn import DQNConfig

    # RLlib's config validation turns the buffer type into a class, then Algorithm.setup tests it
    # as a string (ray-project/ray issue 60491).
    with pytest.raises(TypeError, match="argument of type 'ABCMeta' is not iterable"):
        old_stack(DQNConfig(), "CartPole-v1").build_algo()


def test_rllib_cannot_build_an_old_stack_sac(ray_cluster):
    from ray.rllib.algorithms.sac import SACConfig

    # "tf": an assertion in RLlib's squashed Gaussian; "tf2": a tf.Variable without a value.
    expected = AssertionError if FRAMEWORK == "tf" else ValueError
    with pytest.raises(expected):
        old_stack(SACConfig(), "Pendulum-v1").build_algo()
