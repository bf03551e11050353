"""The PPO CartPole configuration every benchmark measures (old API stack, TF policies)."""

from __future__ import annotations

from typing import Any


def cartpole_ppo(framework: str, num_env_runners: int = 0, **training: Any) -> Any:
    """``PPOConfig`` on CartPole-v1 for ``framework`` ("tf" or "tf2"); ``training`` as in ``.training()``."""
    from ray.rllib.algorithms.ppo import PPOConfig

    config = (
        PPOConfig()
        .api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)
        .environment("CartPole-v1")
        .framework(framework)
        .env_runners(num_env_runners=num_env_runners)
    )
    return config.training(**training) if training else config
