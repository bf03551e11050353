"""Two torch RLModules on RLlib's MultiAgentCartPole (new API stack), each explained separately.

Agent 0 acts with module "left", agent 1 with module "right". SaliencyCallbacks
logs each module under its own tags (saliency/left/..., saliency/right/...),
the module id taking the place of the old stack's policy id, and composes with
a user's own callbacks: on the new stack, a plain list in ``.callbacks([...])``.

Run: python examples/multi_agent_torch.py [--iterations 5]
"""

from __future__ import annotations

# isort: off
import rllib_saliency  # noqa: F401  (import first: a safe TensorFlow/torch import order)

# isort: on
import argparse
import os
import sys

import ray
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.examples.envs.classes.multi_agent import MultiAgentCartPole

from rllib_saliency import SaliencyCallbacks
from rllib_saliency.callbacks import default_logdir

FEATURES = ["cart_position", "cart_velocity", "pole_angle", "pole_angular_velocity"]


class ResultMarker(RLlibCallback):
    """Stands for a user's own callbacks: adds a key to every training result."""

    def on_train_result(self, *, result, **kwargs):
        result["driver_saw_result"] = True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=5)
    args = parser.parse_args()

    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    config = (
        PPOConfig()
        .environment(MultiAgentCartPole, env_config={"num_agents": 2})
        .env_runners(num_env_runners=1)
        .training(train_batch_size=1000, minibatch_size=250, num_epochs=4)
        .multi_agent(
            policies={"left", "right"},
            policy_mapping_fn=lambda agent_id, *args, **kwargs: "left" if agent_id == 0 else "right",
        )
        .callbacks(
            [
                ResultMarker,
                SaliencyCallbacks.configure(
                    methods=("gradient",),
                    targets=("action", "value"),
                    feature_names={"left": FEATURES, "right": FEATURES},
                    image_every=1,
                ),
            ]
        )
    )
    algo = config.build_algo()
    for _ in range(args.iterations):
        result = algo.train()
        assert result["driver_saw_result"]
        saliency = result["saliency"]
        line = [f"iteration {result['training_iteration']}"]
        for module_id in ("left", "right"):
            pole = float(saliency[f"{module_id}/action/gradient/mean_abs/pole_angle"])
            line.append(f"{module_id}: |d logit/d pole_angle| {pole:.3f}")
        print("   ".join(line))
    logdir = default_logdir(algo)
    algo.stop()
    ray.shutdown()
    tensorboard = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "tensorboard")
    print(f"\nTensorBoard logs: {logdir}\n  {tensorboard} --logdir {os.path.dirname(logdir)}")


if __name__ == "__main__":
    main()
