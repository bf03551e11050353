"""Two PPO models on RLlib's MultiAgentCartPole, each explained separately in TensorBoard.

Agent 0 acts with model "left", agent 1 with model "right". SaliencyCallbacks logs each
under its own tags (saliency/left/..., saliency/right/...) and composes with a user's own
callbacks. The default runs RLlib's new API stack (torch RLModules: "left"/"right" are module
ids, and a plain list in ``.callbacks([...])`` composes callbacks); ``--framework tf`` or ``tf2``
runs the same on the old API stack (TensorFlow policies: policy ids, and
``make_multi_callbacks([...])``, since a bare list there crashes the env runners).

Run: python examples/multi_agent.py [--iterations 5] [--framework torch|tf|tf2]
"""

from __future__ import annotations

# isort: off
import rllib_saliency  # noqa: F401  (import first: tf-keras, and a safe TensorFlow/torch order)

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
    parser.add_argument("--framework", choices=("torch", "tf", "tf2"), default="torch")
    args = parser.parse_args()

    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    saliency = SaliencyCallbacks.configure(
        methods=("gradient",),
        targets=("action", "value"),
        feature_names={"left": FEATURES, "right": FEATURES},
        image_every=1,
    )
    config = PPOConfig()
    if args.framework == "torch":  # RLlib's default stack: a plain list composes callbacks.
        callbacks = [ResultMarker, saliency]
    else:  # RLlib's TensorFlow policies live on the old API stack.
        from ray.rllib.algorithms.callbacks import make_multi_callbacks

        config = config.api_stack(
            enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False
        ).framework(args.framework)
        callbacks = make_multi_callbacks([ResultMarker, saliency])
    config = (
        config.environment(MultiAgentCartPole, env_config={"num_agents": 2})
        .env_runners(num_env_runners=1)
        .training(train_batch_size=1000, minibatch_size=250, num_epochs=4)
        .multi_agent(
            policies={"left", "right"},
            policy_mapping_fn=lambda agent_id, *args, **kwargs: "left" if agent_id == 0 else "right",
        )
        .callbacks(callbacks)
    )
    algo = config.build_algo()
    for _ in range(args.iterations):
        result = algo.train()
        assert result["driver_saw_result"]
        saliency_result = result["saliency"]
        line = [f"iteration {result['training_iteration']}"]
        for model_id in ("left", "right"):
            pole = float(saliency_result[f"{model_id}/action/gradient/mean_abs/pole_angle"])
            line.append(f"{model_id}: |d logit/d pole_angle| {pole:.3f}")
        print("   ".join(line))
    logdir = default_logdir(algo)
    algo.stop()
    ray.shutdown()
    # Absolute paths, and --logdir one level up so the run is listed under its name.
    tensorboard = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "tensorboard")
    parent = os.path.dirname(os.path.abspath(logdir))
    print(f"\nTensorBoard logs: {logdir}\n  {tensorboard} --logdir {parent}")


if __name__ == "__main__":
    main()
