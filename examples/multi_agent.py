"""Two PPO policies on RLlib's MultiAgentCartPole, each explained separately in TensorBoard.

Agent 0 is trained by policy "left", agent 1 by policy "right". SaliencyCallbacks
logs each policy under its own tags (saliency/left/..., saliency/right/...), and
composes with a user's own callbacks through RLlib's make_multi_callbacks.

Run: python examples/multi_agent.py [--iterations 5] [--framework tf|tf2]
"""

from __future__ import annotations

# isort: off
import rllib_saliency  # noqa: F401  (import before TensorFlow: selects tf-keras for RLlib)

# isort: on
import argparse
import os
import sys

import ray
from ray.rllib.algorithms.callbacks import DefaultCallbacks, make_multi_callbacks
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.examples.envs.classes.multi_agent import MultiAgentCartPole

from rllib_saliency import SaliencyCallbacks

FEATURES = ["cart_position", "cart_velocity", "pole_angle", "pole_angular_velocity"]


class EpisodeCounter(DefaultCallbacks):
    """Stands for a user's own callbacks: counts episodes into the training result."""

    def __init__(self):
        super().__init__()
        self.episodes = 0

    def on_episode_end(self, **kwargs):
        self.episodes += 1

    def on_train_result(self, *, result, **kwargs):
        result["driver_saw_result"] = True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--framework", choices=("tf", "tf2"), default="tf")
    args = parser.parse_args()

    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    config = (
        PPOConfig()
        .api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)
        .environment(MultiAgentCartPole, env_config={"num_agents": 2})
        .framework(args.framework)
        .env_runners(num_env_runners=1)
        .training(train_batch_size=1000, minibatch_size=250, num_epochs=4)
        .multi_agent(
            policies={"left", "right"},
            policy_mapping_fn=lambda agent_id, *args, **kwargs: "left" if agent_id == 0 else "right",
        )
        # On RLlib's old API stack a bare list in .callbacks([...]) crashes the env
        # runners; make_multi_callbacks is the form that works.
        .callbacks(
            make_multi_callbacks(
                [
                    EpisodeCounter,
                    SaliencyCallbacks.configure(
                        methods=("gradient",),
                        targets=("action", "value"),
                        feature_names={"left": FEATURES, "right": FEATURES},
                        image_every=1,
                    ),
                ]
            )
        )
    )
    algo = config.build_algo()
    for _ in range(args.iterations):
        result = algo.train()
        saliency = result["saliency"]
        line = [f"iteration {result['training_iteration']}"]
        for policy_id in ("left", "right"):
            pole = float(saliency[f"{policy_id}/action/gradient/mean_abs/pole_angle"])
            line.append(f"{policy_id}: |d logit/d pole_angle| {pole:.3f}")
        print("   ".join(line))
    logdir = rllib_saliency.callbacks.default_logdir(algo)
    algo.stop()
    ray.shutdown()
    # Absolute paths, and --logdir one level up so the run is listed under its name.
    tensorboard = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "tensorboard")
    parent = os.path.dirname(os.path.abspath(logdir))
    print(f"\nTensorBoard logs: {logdir}\n  {tensorboard} --logdir {parent}")


if __name__ == "__main__":
    main()
