"""Train DQN on CartPole and watch what its Q-network looks at, in TensorBoard.

RLlib's DQN module (new API stack, torch; dueling and double-Q, RLlib's defaults) trains under
Tune for a few minutes on 2 CPU cores, with SaliencyCallbacks logging gradient and Integrated
Gradients saliency of three Q-network targets:

* ``action``: Q(s, a*) of the greedy action a* = argmax_a Q(s, a);
* ``value``: max_a Q(s, a) (for a greedy agent the same number as ``action``; its map differs
  from ``action``'s only where the argmax switches);
* ``advantage``: Q(s, a*) - mean_a Q(s, a), the advantage stream as RLlib's dueling head centres
  it: what makes the chosen action better than the others, without "how good is the state".

Then it prints the TensorBoard command and the ``rllib-saliency explain`` command for the
checkpoint it saves.

Run: python examples/dqn_cartpole.py [--iterations 40] [--storage DIR] [--steps-per-iteration N]
"""

from __future__ import annotations

# isort: off
import rllib_saliency  # noqa: F401  (import first: a safe TensorFlow/torch order)

# isort: on
import argparse

import ray
from _tune import finish, fit, print_table
from cartpole import FEATURES
from ray.rllib.algorithms.dqn import DQN, DQNConfig

from rllib_saliency import SaliencyCallbacks

TARGETS = ("action", "value", "advantage")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--storage", default="demo_results", help="where Tune puts the trial dir")
    parser.add_argument(
        "--steps-per-iteration",
        type=int,
        default=1000,
        help="env steps sampled per iteration (also the most sampled before learning starts)",
    )
    args = parser.parse_args()

    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    config = (
        DQNConfig()
        .environment("CartPole-v1")
        .env_runners(num_env_runners=1)
        .training(
            lr=5e-4,
            train_batch_size_per_learner=32,
            num_steps_sampled_before_learning_starts=min(500, args.steps_per_iteration),
        )
        .reporting(min_sample_timesteps_per_iteration=args.steps_per_iteration)
        # The one line that adds saliency. "advantage" is opt-in (dueling Q-networks only).
        .callbacks(
            SaliencyCallbacks.configure(
                methods=("gradient", "integrated_gradients"),
                targets=TARGETS,
                feature_names=FEATURES,
                image_every=5,
            )
        )
    )
    result = fit(DQN, config, "dqn_cartpole_saliency", args.storage, args.iterations)
    column = "saliency/default_policy/{}/gradient/mean_abs/pole_angle"
    print_table(result, {f"|d {t}/d pole_angle|": column.format(t) for t in TARGETS}, return_width=8)
    finish(result)


if __name__ == "__main__":
    main()
