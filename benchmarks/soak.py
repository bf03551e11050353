"""Soak: 1,000 saliency computations through the callback's own code path, per TF mode and on
the new API stack (torch), and a real training with every=1.

For each mode ("tf" graph, "tf2" eager; separate processes) a PPO CartPole
algorithm with SaliencyCallbacks (defaults, one env runner: the local one) is
built; then, 1,000 times, a real sampled batch goes through the env runner's
``on_sample_end`` and the driver's ``on_train_result`` (sampling, explain on
the runner, trust metrics, merging, TensorBoard writing, images every 10th).
Reported: resident memory at the start and end, op counts of the policy's
graph and of the engine's private graphs, eager trace counts, and time per
computation over the first and last 100. "Warm" is after 200 computations,
when matplotlib's font and text-layout caches (a bounded one-off: about 15 to
40 MiB over the first 20 image renders) have filled. Then a real training of
``--train-iterations`` iterations with every=1 (graph mode), memory and
iteration time at the start and end. Prints a table and writes
benchmarks/results/soak.json.

The same training without rllib-saliency is the baseline for the training rows.

Usage: python benchmarks/soak.py [--computations 1000] [--train-iterations 100] [--only-training]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("results")


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def build(framework: str, logdir: str, batch: int = 256, saliency: bool = True):
    import ray
    from _cartpole import cartpole_ppo, cartpole_ppo_new_stack

    from rllib_saliency import SaliencyCallbacks

    if not ray.is_initialized():
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    if framework == "torch":
        config = cartpole_ppo_new_stack(train_batch_size=batch, minibatch_size=128, num_epochs=1)
    else:
        config = cartpole_ppo(framework, train_batch_size=batch, minibatch_size=128, num_epochs=1)
    if saliency:
        config = config.callbacks(SaliencyCallbacks.configure(every=1, logdir=logdir))
    return config.build_algo()


def soak(framework: str, computations: int) -> dict:
    from rllib_saliency.backends import backend_for
    from rllib_saliency.callbacks import find_saliency_callbacks

    with tempfile.TemporaryDirectory() as logdir:
        algo = build(framework, logdir)
        algo.train()
        worker = algo.env_runner
        # Old stack: a SampleBatch; new stack: a list of episodes (what on_sample_end receives).
        batch = worker.sample()
        runner_callbacks = find_saliency_callbacks(worker)
        driver_callbacks = find_saliency_callbacks(algo)
        if framework == "torch":
            model = algo.learner_group._learner.module["default_policy"]
        else:
            model = algo.get_policy()
        steps = sum(len(e) for e in batch) if framework == "torch" else len(batch)

        def policy_ops() -> int | None:
            return len(model.get_session().graph.get_operations()) if framework == "tf" else None

        def engine_state() -> dict:
            backend = backend_for(model)
            if framework == "tf":
                return {"private_graph_ops": len(backend.graph.get_operations())}
            if framework == "torch":  # nothing is traced or built per call; parameters untouched
                return {"parameter_grads": sum(p.grad is not None for p in model.parameters())}
            return {"eager_traces": backend.trace_count}

        times, memory = [], []
        start_state = None
        warm = min(200, computations // 2)
        warm_rss = None
        for i in range(computations):
            runner_callbacks.on_sample_end(worker=worker, env_runner=worker, samples=batch)
            result = {"training_iteration": i + 1, "timesteps_total": (i + 1) * steps}
            started = time.perf_counter()
            driver_callbacks.on_train_result(algorithm=algo, result=result)
            times.append(time.perf_counter() - started)
            if "errors" in result.get("saliency", {}):
                raise SystemExit(f"saliency errors in the soak: {result['saliency']}")
            if i == 9:  # everything built and traced
                start_state = {"rss_mb": rss_mb(), "policy_graph_ops": policy_ops(), **engine_state()}
            if i == warm - 1:  # matplotlib's font and text caches warmed up too (20 image renders)
                warm_rss = rss_mb()
            memory.append(rss_mb())
        end_state = {"rss_mb": rss_mb(), "policy_graph_ops": policy_ops(), **engine_state()}
        algo.stop()
    window = min(100, computations // 2)
    return {
        "framework": framework,
        "computations": computations,
        "start": start_state,
        "end": end_state,
        "rss_growth": end_state["rss_mb"] / start_state["rss_mb"] - 1,
        "rss_mb_after_warmup": warm_rss,
        "warmup_computations": warm,
        "rss_growth_after_warmup": end_state["rss_mb"] / warm_rss - 1,
        "ms_per_computation_first": 1e3 * statistics.median(times[10 : 10 + window]),
        "ms_per_computation_last": 1e3 * statistics.median(times[-window:]),
        # Least-squares trend over all computations after the first 10, as a share of the mean:
        # robust to the machine noise that moves single 100-computation medians by ±20 %.
        "trend_over_run": _trend(times[10:]),
        # The whole curve, so a drift shows its shape (steady climb, step, or noise).
        "ms_per_computation_by_window": [
            round(1e3 * statistics.median(times[i : i + window]), 1) for i in range(0, len(times), window)
        ],
    }


def _trend(times: list[float]) -> float:
    """The least-squares line's change from the first to the last point, relative to the mean."""
    import numpy as np

    y = np.asarray(times, np.float64)
    slope = np.polyfit(np.arange(len(y)), y, 1)[0]
    return float(slope * (len(y) - 1) / y.mean())


def train(iterations: int, saliency: bool = True) -> dict:
    with tempfile.TemporaryDirectory() as logdir:
        algo = build("tf", logdir, saliency=saliency)
        times, memory = [], []
        for _ in range(iterations):
            started = time.perf_counter()
            algo.train()
            times.append(time.perf_counter() - started)
            memory.append(rss_mb())
        algo.stop()
    window = max(1, min(10, iterations // 4))
    return {
        "iterations": iterations,
        "rss_mb_after_first": memory[window - 1],
        "rss_mb_end": memory[-1],
        "rss_growth": memory[-1] / memory[window - 1] - 1,
        "s_per_iteration_first": statistics.median(times[1 : window + 1]),
        "s_per_iteration_last": statistics.median(times[-window:]),
    }


def _trend_text(row: dict) -> str:
    return f"{row['trend_over_run']:+.1%}" if "trend_over_run" in row else "not measured"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--computations", type=int, default=1000)
    parser.add_argument("--train-iterations", type=int, default=100)
    parser.add_argument("--only-training", action="store_true", help="run the training rows only")
    modes = ("tf", "tf2", "torch")
    parser.add_argument("--child", choices=(*modes, "train", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=modes, help="run the soak of one mode only")
    args = parser.parse_args()
    if args.child:
        import rllib_saliency  # noqa: F401

        if args.child in ("train", "baseline"):
            row = train(args.train_iterations, saliency=args.child == "train")
        else:
            row = soak(args.child, args.computations)
        print(json.dumps(row))
        return
    partial = args.only_training or args.only
    saved = RESULTS / "soak.json"
    rows = json.loads(saved.read_text()) if partial and saved.exists() else {}
    children = ("tf", "tf2", "torch", "train", "baseline")
    if args.only_training:
        children = ("train", "baseline")
    elif args.only:
        children = (args.only,)
    for child in children:
        command = [sys.executable, __file__, "--child", child, "--computations", str(args.computations)]
        command += ["--train-iterations", str(args.train_iterations)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"soak {child} failed:\n{done.stderr[-3000:]}")
        rows[child] = json.loads(done.stdout.strip().splitlines()[-1])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(rows, indent=2))
    print(
        "| mode | computations | RSS start → warm → end (MiB) | growth from start / from warm "
        "| policy graph ops | engine | ms/computation first → last 100 | trend over the run |"
    )
    print("|---|---|---|---|---|---|---|---|")
    labels = {"tf": "graph (tf)", "tf2": "eager (tf2)", "torch": "new stack (torch)"}
    for mode in (m for m in labels if m in rows):
        r = rows[mode]
        if mode == "tf":
            engine = f"private graph ops {r['start']['private_graph_ops']} → {r['end']['private_graph_ops']}"
        elif mode == "torch":
            engine = f"parameter .grad set {r['start']['parameter_grads']} → {r['end']['parameter_grads']}"
        else:
            engine = f"traces {r['start']['eager_traces']} → {r['end']['eager_traces']}"
        ops = f"{r['start']['policy_graph_ops']} → {r['end']['policy_graph_ops']}" if mode == "tf" else "n/a"
        print(
            f"| {labels[mode]} | {r['computations']} "
            f"| {r['start']['rss_mb']:.0f} → {r['rss_mb_after_warmup']:.0f} → {r['end']['rss_mb']:.0f} "
            f"| {r['rss_growth']:+.1%} / {r['rss_growth_after_warmup']:+.1%} "
            f"| {ops} | {engine} "
            f"| {r['ms_per_computation_first']:.0f} → {r['ms_per_computation_last']:.0f} "
            f"| {_trend_text(r)} |"
        )
    for key, label in (("train", "with rllib-saliency, every=1"), ("baseline", "without rllib-saliency")):
        if key not in rows:
            continue
        t = rows[key]
        print(
            f"\nReal training, graph mode, {label}, {t['iterations']} iterations: "
            f"RSS {t['rss_mb_after_first']:.0f} → "
            f"{t['rss_mb_end']:.0f} MiB ({t['rss_growth']:+.1%}), {t['s_per_iteration_first']:.2f} → "
            f"{t['s_per_iteration_last']:.2f} s per iteration."
        )


if __name__ == "__main__":
    main()
