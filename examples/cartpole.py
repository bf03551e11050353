"""Train PPO on CartPole and watch what it looks at, in TensorBoard.

`make demo` runs this on RLlib's new API stack (torch RLModules); `--framework tf` or `tf2`
runs the same on the old API stack (TensorFlow policies). It trains under Tune for about a
minute on 2 CPU cores with
SaliencyCallbacks logging gradient and Integrated Gradients saliency of the
greedy action's logit and of the value function, then prints the TensorBoard
command and the ``rllib-saliency explain`` command for the checkpoint it saves.
The torch config is RLlib's default stack: no .api_stack(...), no .framework(...).

Run: python examples/cartpole.py [--iterations 12] [--framework torch|tf|tf2] [--storage DIR]
"""

from __future__ import annotations

# isort: off
import rllib_saliency  # noqa: F401  (import first: tf-keras, and a safe TensorFlow/torch order)

# isort: on
import argparse

import ray
from _tune import finish, fit, print_table
from ray.rllib.algorithms.ppo import PPO, PPOConfig

from rllib_saliency import SaliencyCallbacks

FEATURES = ["cart_position", "cart_velocity", "pole_angle", "pole_angular_velocity"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--framework", choices=("torch", "tf", "tf2"), default="torch")
    parser.add_argument("--storage", default="demo_results", help="where Tune puts the trial dir")
    args = parser.parse_args()

    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    config = PPOConfig()
    if args.framework != "torch":  # RLlib's TensorFlow policies live on the old API stack.
        config = config.api_stack(
            enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False
        ).framework(args.framework)
    config = (
        config
        .environment("CartPole-v1")
        .env_runners(num_env_runners=2)
        .training(train_batch_size=2000, minibatch_size=256, num_epochs=8)
        # The one line that adds saliency, the same on both stacks. Every iteration: 64
        # sampled observations per env runner, explained by the model with the learner's
        # weights (new stack: the learner's module; old stack: each env runner's policy);
        # two methods, two targets; images every 2nd computation.
        .callbacks(
            SaliencyCallbacks.configure(
                every=1,
                num_samples=64,
                methods=("gradient", "integrated_gradients"),
                targets=("action", "value"),
                feature_names=FEATURES,
                image_every=2,
            )
        )
    )
    # Under Tune, RLlib's own curves and the saliency land in the same trial dir,
    # so one TensorBoard shows both with aligned steps.
    name = "cartpole_saliency" if args.framework == "torch" else f"cartpole_saliency_{args.framework}"
    result = fit(PPO, config, name, args.storage, args.iterations)
    prefix = "saliency/default_policy/action/gradient/mean_abs"
    print_table(
        result,
        {
            "|d logit/d pole_angle|": f"{prefix}/pole_angle",
            "|d logit/d cart_position|": f"{prefix}/cart_position",
            "saliency s": "saliency/seconds",
        },
    )
    finish(result)


if __name__ == "__main__":
    main()
