"""PPO on Atari Pong with saliency heatmaps over the screen, in TensorBoard.

RLlib applies its DeepMind preprocessing by itself (84×84 grey frames, a stack of
4), so the policy sees Box(0, 255, (84, 84, 4), uint8) through its vision network.
The `importance` image of each (target, method) shows, per sampled observation,
the newest frame with the saliency heatmap overlaid, the heatmap alone, and (with
frame_maps=True) each of the 4 stacked frames with its own map.

Needs the `atari` extra: pip install -e ".[atari]" (ale-py ships the ROMs).
Run: python examples/atari.py [--game Pong] [--iterations 3] [--framework tf|tf2]
A few iterations take minutes on a laptop CPU; learning Pong takes hours.
"""

from __future__ import annotations

# isort: off
import rllib_saliency  # noqa: F401  (import before TensorFlow: selects tf-keras for RLlib)

# isort: on
import argparse
import os
import sys

import gymnasium as gym
import ray
from ray import tune
from ray.rllib.algorithms.ppo import PPO, PPOConfig

from rllib_saliency import SaliencyCallbacks


def make_atari(config: dict) -> gym.Env:
    import ale_py  # registers the ALE/ environments in this (worker) process

    gym.register_envs(ale_py)
    # RLlib's own Atari wrappers do frame skipping and stacking: keep ALE's off.
    return gym.make(f"ALE/{config['game']}-v5", frameskip=1, repeat_action_probability=0.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--game", default="Pong")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--framework", choices=("tf", "tf2"), default="tf")
    parser.add_argument("--storage", default="demo_results")
    args = parser.parse_args()

    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    tune.register_env("atari", make_atari)
    config = (
        PPOConfig()
        .api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)
        .environment("atari", env_config={"game": args.game})
        .framework(args.framework)
        .env_runners(num_env_runners=2, rollout_fragment_length=256)
        .training(train_batch_size=512, minibatch_size=128, num_epochs=2)
        .callbacks(
            SaliencyCallbacks.configure(
                methods=("gradient", "occlusion"),
                targets=("action", "value"),
                num_samples=8,
                max_images=4,
                frame_maps=True,
                image_every=1,
                # Greydanus et al. 2018: blurred patches; 84 / 12 = 7 patches per side.
                method_options={"occlusion": {"patch_size": 12, "stride": 12}},
            )
        )
    )
    # The class, not the string "PPO": for a string, Tune registers every RLlib algorithm, and
    # importing DreamerV3 builds a debug CartPole whose float64 Box bounds and observations make
    # gymnasium warn about Box precision and a reset() obs "not within the observation space".
    tuner = tune.Tuner(
        PPO,
        param_space=config,
        run_config=tune.RunConfig(
            name=f"atari_{args.game.lower()}_saliency",
            storage_path=os.path.abspath(args.storage),
            stop={"training_iteration": args.iterations},
            verbose=0,
        ),
    )
    result = tuner.fit()[0]
    if result.error:
        raise SystemExit(f"training failed: {result.error}")
    ray.shutdown()
    # Absolute paths, and --logdir one level up so the trial is listed under its name.
    tensorboard = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "tensorboard")
    print(f"TensorBoard logs: {result.path}\n  {tensorboard} --logdir {os.path.dirname(result.path)}")
    print("(Tune's TensorBoard hint printed earlier points at driver_artifacts: no saliency there.)")
    print("Open the IMAGES tab: saliency/default_policy/action/gradient/importance")


if __name__ == "__main__":
    main()
