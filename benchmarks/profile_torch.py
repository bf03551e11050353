"""Where an explain() call's time goes on a torch module: torch's profiler (host and device time
per operator) and cProfile (Python functions) over a few calls, after warm-up calls.

For the rows issue 20 left unmet on a GPU (Integrated Gradients; the MLP's fixed cost per call):
    python benchmarks/profile_torch.py --model cnn --method integrated_gradients --n 256 --device cuda
Prints the tables and writes them to --out (default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_torch import RESULTS, build_module, observations  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=("mlp", "cnn"), default="cnn")
    parser.add_argument("--method", default="integrated_gradients")
    parser.add_argument("--target", default="action")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    import rllib_saliency  # noqa: F401  (first: a safe TF/torch import order)
    from rllib_saliency import explain

    module = build_module(args.model, args.device)
    obs = observations(args.model, args.n)
    options = {"steps": args.steps} if args.method == "integrated_gradients" else {}
    if args.method == "smoothgrad":
        options = {"n_samples": args.steps}

    def call() -> None:
        explain(module, obs, args.method, args.target, **options)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    for _ in range(5):
        call()
    started = time.perf_counter()
    for _ in range(args.calls):
        call()
    per_call = (time.perf_counter() - started) / args.calls * 1e3

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device.startswith("cuda") else [])
    with profile(activities=activities) as profiler:
        for _ in range(args.calls):
            call()
    sort = "cuda_time_total" if args.device.startswith("cuda") else "cpu_time_total"
    operators = profiler.key_averages().table(sort_by=sort, row_limit=30)
    by_self_cpu = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=30)

    python = cProfile.Profile()
    python.enable()
    for _ in range(args.calls):
        call()
    python.disable()
    text = io.StringIO()
    pstats.Stats(python, stream=text).sort_stats("cumulative").print_stats(40)

    report = (
        f"{args.model} {args.method} {args.target} N={args.n} on {args.device}: "
        f"{per_call:.2f} ms per call ({args.calls} calls)\n\n"
        f"## torch profiler, by {sort}\n{operators}\n\n## torch profiler, by self CPU time\n{by_self_cpu}\n\n"
        f"## cProfile, cumulative\n{text.getvalue()}"
    )
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"profile_{args.model}_{args.method}_{args.target}_{args.n}_{args.device.replace(':', '')}.txt"
    (args.out / name).write_text(report)


if __name__ == "__main__":
    main()
