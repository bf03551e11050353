"""Train PPO on CartPole for a few iterations, then explain the policy with every method.

Run: python examples/explain_cartpole.py [--framework torch|tf|tf2] [--iterations 3] [--plot value.png]

``torch`` (the default) is RLlib's new API stack; ``tf``/``tf2`` its old one. The explaining is
the same line on both.
"""

from __future__ import annotations

# isort: off
import rllib_saliency  # noqa: F401  (import before TensorFlow: selects tf-keras)

# isort: on
import argparse

import gymnasium as gym
import numpy as np
import ray
from ray.rllib.algorithms.ppo import PPOConfig

from rllib_saliency import METHODS, explain, plot

FEATURES = ["cart_position", "cart_velocity", "pole_angle", "pole_angular_velocity"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--framework", choices=("torch", "tf", "tf2"), default="torch")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--plot", metavar="PNG", help="write the value's Integrated Gradients chart there")
    args = parser.parse_args()

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    config = (
        PPOConfig()
        .environment("CartPole-v1")
        .env_runners(num_env_runners=0)
        .training(train_batch_size=1000, minibatch_size=250, num_epochs=4)  # short iterations
    )
    if args.framework != "torch":  # RLlib's TensorFlow policies live on the old API stack.
        config = config.api_stack(
            enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False
        ).framework(args.framework)
    algo = config.build_algo()
    for i in range(args.iterations):
        result = algo.train()
        print(f"iteration {i + 1}: episode return {result['env_runners']['episode_return_mean']:.1f}")

    # A batch of real observations from the environment.
    env = gym.make("CartPole-v1")
    obs = np.stack([env.reset(seed=s)[0] for s in range(256)])
    print(f"\nmean |attribution| per feature, {len(obs)} observations, target 'action' (greedy logit)")
    print(f"{'method':24s}" + "".join(f"{name:>24s}" for name in FEATURES))
    for method in METHODS:
        # explain(algo, ...): the model with the learner's current weights (the learner's RLModule,
        # or on the old stack the TF policy).
        attribution = explain(algo, obs, method=method, target="action")
        print(f"{method:24s}" + "".join(f"{v:24.4f}" for v in np.abs(attribution.values).mean(0)))
    ig = explain(algo, obs, method="integrated_gradients", target="value")
    print(f"\nIntegrated Gradients on the value: max |completeness error| {np.abs(ig.delta).max():.2e}")
    if args.plot:  # in a notebook, plot(ig) alone shows it
        plot(ig, FEATURES).savefig(args.plot)
        print(f"chart: {args.plot}")
    algo.stop()
    ray.shutdown()


if __name__ == "__main__":
    main()
