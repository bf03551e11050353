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
import os

import ray
from cartpole import FEATURES, print_next_steps
from ray import tune
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
    tuner = tune.Tuner(
        DQN,  # the class, not "DQN": see examples/cartpole.py
        param_space=config,
        run_config=tune.RunConfig(
            name="dqn_cartpole_saliency",
            storage_path=os.path.abspath(args.storage),
            stop={"training_iteration": args.iterations},
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=True),
            verbose=0,
        ),
    )
    result = tuner.fit()[0]
    if result.error:
        raise SystemExit(f"training failed: {result.error}")
    history = result.metrics_dataframe
    columns = {target: f"saliency/default_policy/{target}/gradient/mean_abs/pole_angle" for target in TARGETS}
    header = "  ".join(f"{'|d ' + t + '/d pole_angle|':>26}" for t in TARGETS)
    print(f"{'iteration':>9}  {'return':>7}  {header}")
    for _, row in history.iterrows():
        print(
            f"{row['training_iteration']:9d}  {row['env_runners/episode_return_mean']:7.1f}  "
            + "  ".join(f"{row[columns[t]]:26.3f}" for t in TARGETS)
        )
    ray.shutdown()
    print_next_steps(result.path, result.checkpoint.path if result.checkpoint is not None else None)


if __name__ == "__main__":
    main()
