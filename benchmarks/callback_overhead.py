"""Callback overhead: PPO CartPole with 2 env runners, with and without SaliencyCallbacks.

``--framework tf``/``tf2``: RLlib's old API stack; ``--framework torch``: the new API stack
(RLlib's default; the learner's module explains the runners' samples).

Both algorithms are built in one process and trained alternately, one
iteration each in turn, so machine noise hits both alike. Reports the median
iteration wall time of each, the overhead ratio, and the driver time of one
saliency computation (``result["saliency"]["seconds"]``). Prints a table and
writes benchmarks/results/callback_overhead.json.

``--short``: shorter iterations (``minibatch_size=128, num_epochs=10``: about 4 s on
2 cores instead of about 6 s with PPO's defaults), where the callback's fixed cost weighs
more. The target is on the **mean** iteration time (images included), for both.

``--env image`` (new API stack, torch): an image policy instead, PPO with RLlib's default CNN
on Atari-shaped 84x84x4 float32 observations from a small synthetic env (``_image_env.py``),
``--train-batch-size`` (default 1000) steps per iteration, minibatches of 128, one epoch.
Writes callback_overhead_image.json.

``--algorithm dqn`` (new API stack): RLlib's DQN (dueling, double-Q: its defaults) on CartPole with
2 env runners; ``--algorithm sac``: SAC on Pendulum-v1 with 2 env runners and
``rollout_fragment_length=50`` (SAC's default of 1 made an iteration take 81-116 s here), other
settings RLlib's defaults. Writes callback_overhead_dqn.json / callback_overhead_sac.json.

Usage: python benchmarks/callback_overhead.py [--iterations 10] [--framework tf|tf2|torch] [--short]
       [--env cartpole|image] [--train-batch-size N] [--algorithm ppo|dqn|sac]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results")


def value_based_config(algorithm: str) -> Any:
    """RLlib's DQN on CartPole or SAC on Pendulum (new API stack), 2 env runners, seeded."""
    if algorithm == "dqn":
        from ray.rllib.algorithms.dqn import DQNConfig

        return DQNConfig().environment("CartPole-v1").env_runners(num_env_runners=2).debugging(seed=0)
    from ray.rllib.algorithms.sac import SACConfig

    return (
        SACConfig()
        .environment("Pendulum-v1")
        .env_runners(num_env_runners=2, rollout_fragment_length=50)
        .debugging(seed=0)
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--short", action="store_true", help="minibatch_size=128, num_epochs=10")
    parser.add_argument("--framework", choices=("tf", "tf2", "torch"), default="tf")
    parser.add_argument("--env", choices=("cartpole", "image"), default="cartpole")
    parser.add_argument("--train-batch-size", type=int, default=1000, help="--env image only")
    parser.add_argument("--algorithm", choices=("ppo", "dqn", "sac"), default="ppo")
    args = parser.parse_args()
    if args.env == "image" or args.algorithm != "ppo":
        args.framework = "torch"  # RLlib's new API stack runs torch

    # isort: off
    import rllib_saliency  # noqa: F401  (first: selects tf-keras before TensorFlow loads Keras)

    # isort: on
    import ray
    from _cartpole import cartpole_ppo, cartpole_ppo_new_stack

    from rllib_saliency import SaliencyCallbacks

    # Env runners import the image env's module from here, as the driver does.
    here = str(Path(__file__).parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=5, include_dashboard=False, log_to_driver=False)
    if args.algorithm != "ppo":
        base = value_based_config(args.algorithm)
    elif args.env == "image":
        from _image_env import AtariShapedEnv

        base = (
            cartpole_ppo_new_stack(num_env_runners=2)
            .environment(AtariShapedEnv)
            .training(train_batch_size=args.train_batch_size, minibatch_size=128, num_epochs=1)
        )
    elif args.framework == "torch":
        base = cartpole_ppo_new_stack(num_env_runners=2)
    else:
        base = cartpole_ppo(args.framework, num_env_runners=2)
    if args.short:
        base = base.training(minibatch_size=128, num_epochs=10)
    runs = {
        "without": base.copy().build_algo(),
        "with": base.copy().callbacks(SaliencyCallbacks).build_algo(),  # defaults
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    warm_up: dict[str, float] = {}
    saliency_seconds: list[float] = []
    computed: list[int] = []  # iterations (warm-up = 0) that computed saliency
    share = 0.0  # the callback's own account: its computations' share of the time so far
    for name, algo in runs.items():  # warm-up: first iteration builds and traces (and computes)
        start = time.perf_counter()
        result = algo.train()
        warm_up[name] = time.perf_counter() - start
        if "seconds" in result.get("saliency", {}):
            computed.append(0)
            share = float(result["saliency"]["overhead"])
    for iteration in range(1, args.iterations + 1):
        for name, algo in runs.items():
            start = time.perf_counter()
            result = algo.train()
            times[name].append(time.perf_counter() - start)
            print(f"iteration {len(times[name])} {name}: {times[name][-1]:.2f} s", flush=True)
            # With every=None (the default) an iteration computes only within max_overhead.
            if name == "with" and "seconds" in result.get("saliency", {}):
                saliency_seconds.append(float(result["saliency"]["seconds"]))
                computed.append(iteration)
                share = float(result["saliency"]["overhead"])
    without, with_ = statistics.median(times["without"]), statistics.median(times["with"])
    median_saliency = statistics.median(saliency_seconds) if saliency_seconds else None
    row = {
        "env": "AtariShapedEnv 84x84x4, default CNN" if args.env == "image" else base.env,
        "algorithm": args.algorithm.upper(),
        "framework": args.framework,
        "iterations": args.iterations,
        "train_batch_size": base.train_batch_size_per_learner,
        "iteration": "short" if args.short else "default",
        "median_iteration_s_without": without,
        "median_iteration_s_with": with_,
        "overhead_ratio": with_ / without - 1,
        # The mean includes the 1-in-`image_every` computations that also render images.
        "mean_overhead_ratio": statistics.mean(times["with"]) / statistics.mean(times["without"]) - 1,
        "median_saliency_s_per_computation": median_saliency,
        "saliency_share_of_iteration": None if median_saliency is None else median_saliency / with_,
        "iterations_that_computed": computed,
        # Whole runs, warm-up included: what the first computation adds to a short run.
        "total_overhead_ratio_with_warm_up": (warm_up["with"] + sum(times["with"]))
        / (warm_up["without"] + sum(times["without"]))
        - 1,
        "callback_reported_share": share,
        "warm_up_s": warm_up,
        "iteration_s": times,
        "saliency_s": saliency_seconds,
    }
    for algo in runs.values():
        algo.stop()
    ray.shutdown()
    RESULTS.mkdir(exist_ok=True)
    name = "callback_overhead" + ("" if args.framework == "tf" else f"_{args.framework}")
    name = "callback_overhead_image" if args.env == "image" else name
    name = f"callback_overhead_{args.algorithm}" if args.algorithm != "ppo" else name
    name += "_short.json" if args.short else ".json"
    (RESULTS / name).write_text(json.dumps(row, indent=2))
    per_computation = row["median_saliency_s_per_computation"]
    print(
        "| algorithm, mode | iterations | median iteration without (s) | with (s) | overhead (median / mean) "
        "| saliency per computation (s) | its share | iterations that computed (0 = warm-up) "
        "| whole run incl. warm-up | callback's reported share |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {row['algorithm']}, {args.framework} | {row['iteration']} | {without:.2f} | {with_:.2f} "
        f"| {row['overhead_ratio']:+.1%} / {row['mean_overhead_ratio']:+.1%} "
        + (
            f"| {per_computation:.3f} | {row['saliency_share_of_iteration']:.1%} "
            if per_computation is not None
            else "| (none after warm-up) | 0% "
        )
        + f"| {computed} | {row['total_overhead_ratio_with_warm_up']:+.1%} | {share:.1%} |"
    )


if __name__ == "__main__":
    main()
