"""The PPO CartPole configurations the benchmarks measure (old API stack TF policies; new API stack torch)."""

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


def cartpole_ppo_new_stack(num_env_runners: int = 0, seed: int = 0, **training: Any) -> Any:
    """``PPOConfig`` on CartPole-v1 on RLlib's new API stack (torch RLModule), seeded."""
    from ray.rllib.algorithms.ppo import PPOConfig

    config = (
        PPOConfig()
        .environment("CartPole-v1")
        .framework("torch")
        .env_runners(num_env_runners=num_env_runners)
        .debugging(seed=seed)
    )
    return config.training(**training) if training else config
