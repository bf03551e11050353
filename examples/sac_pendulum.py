"""Train SAC on Pendulum and watch what its policy and its critics look at, in TensorBoard.

RLlib's SAC module (new API stack, torch) trains under Tune for a few minutes on 2 CPU cores,
with SaliencyCallbacks logging gradient and Integrated Gradients saliency of:

* ``action_0``: the Gaussian policy's mean torque, before tanh squashing;
* ``value``: min(Q1, Q2)(s, a), the smaller twin Q-value, at the greedy action
  a = tanh(mean(s)) held fixed: the gradient is w.r.t. the observation only, not through
  the policy;
* ``logp``: the log-probability of the action taken, under the squashed Gaussian.

Observations are (cos theta, sin theta, angular velocity). Then it prints the TensorBoard
command and the ``rllib-saliency explain`` command for the checkpoint it saves.

Run: python examples/sac_pendulum.py [--iterations 30] [--storage DIR] [--steps-per-iteration N]
"""

from __future__ import annotations

# isort: off
import rllib_saliency  # noqa: F401  (import first: a safe TensorFlow/torch order)

# isort: on
import argparse

import ray
from _tune import finish, fit, print_table
from ray.rllib.algorithms.sac import SAC, SACConfig

from rllib_saliency import SaliencyCallbacks

FEATURES = ["cos_theta", "sin_theta", "angular_velocity"]
TARGETS = ("action_0", "value", "logp")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--storage", default="demo_results", help="where Tune puts the trial dir")
    parser.add_argument(
        "--steps-per-iteration",
        type=int,
        default=500,
        help="env steps sampled per iteration (also the most sampled before learning starts)",
    )
    args = parser.parse_args()

    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    config = (
        SACConfig()
        .environment("Pendulum-v1")
        # rollout_fragment_length=50: RLlib's default of 1 step per sample() call makes each
        # iteration take minutes here.
        .env_runners(num_env_runners=1, rollout_fragment_length=50)
        .training(
            actor_lr=1e-3,
            critic_lr=1e-3,
            alpha_lr=1e-3,
            train_batch_size_per_learner=256,
            num_steps_sampled_before_learning_starts=min(1000, args.steps_per_iteration),
        )
        .reporting(min_sample_timesteps_per_iteration=args.steps_per_iteration)
        .callbacks(
            SaliencyCallbacks.configure(
                methods=("gradient", "integrated_gradients"),
                targets=("action", "value", "logp"),  # "action": every dimension, as action_0, ...
                feature_names=FEATURES,
                image_every=5,
            )
        )
    )
    result = fit(SAC, config, "sac_pendulum_saliency", args.storage, args.iterations)
    column = "saliency/default_policy/{}/gradient/mean_abs/angular_velocity"
    print_table(result, {f"|d {t}/d ang_vel|": column.format(t) for t in TARGETS}, return_width=8)
    finish(result)


if __name__ == "__main__":
    main()
