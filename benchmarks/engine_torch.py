"""Engine benchmark, new API stack: input gradients of a torch PPO module, ours vs. bare torch.

For the learner's module of a new-API-stack PPO CartPole (torch, one training
iteration), on batches of N=256 and N=4096 random observations, measures the
greedy action's logit gradient (target "action") three ways:
  (a) ``explain(module, obs, "gradient", "action")``: numpy in, numpy out;
  (b) bare: one ``torch.autograd.grad`` over the module's whole ``module._forward`` on
      the same batch (numpy -> tensor, forward, argmax, backward, -> numpy);
  (c) a per-sample loop, as a naive user writes it: (b) for one observation at a time.
(a), (b) and (c) alternate within each repeat (c: 16 of ``--per-sample`` observations
per repeat, in turn), so machine noise hits all three alike; each is first checked to
give the same numbers. explain() runs only the actor half of RLlib's default PPO module
(``backends/torch.py: actor_path``), which is why it can beat (b). One process,
``--threads`` torch threads (default 1, as on RLlib's env runners; the callback's
learner uses torch's default). Ratios to look at: ours ÷ bare (target <= 1.5x) and
per-sample ÷ ours (target >= 100x), by medians. Prints a table and writes
benchmarks/results/engine_torch.json (``engine_torch_{K}threads.json`` for K > 1).
Ratios, not absolute times, are the result: they are measured in one run on one machine.

``--device cuda`` moves the module to the GPU (as a learner with ``num_gpus_per_learner=1``
holds it) and writes ``engine_torch_cuda.json``.

Usage: python benchmarks/engine_torch.py [--quick] [--repeats 50] [--per-sample 256] [--threads 1]
       [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("results")
PER_SAMPLE_ROWS = 16  # per-sample loop observations timed in each repeat


def measure(sizes: tuple[int, ...], repeats: int, per_sample: int, threads: int, device: str) -> dict:
    # isort: off
    import rllib_saliency  # noqa: F401  (first: a safe TF/torch import order for RLlib's new stack)

    # isort: on
    import numpy as np
    import ray
    import torch
    from _cartpole import cartpole_ppo_new_stack
    from ray.rllib.core import DEFAULT_MODULE_ID
    from ray.rllib.core.columns import Columns

    from rllib_saliency import explain

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    config = cartpole_ppo_new_stack(train_batch_size=256, minibatch_size=128, num_epochs=1)
    algo = config.build_algo()
    algo.train()
    module = algo.learner_group._learner.module[DEFAULT_MODULE_ID]  # the learner's full module
    module.to(device)  # "cuda": as a learner on a GPU holds it (explain() computes where it is)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)

    def bare(x_np: np.ndarray) -> np.ndarray:
        """The floor: one forward and one backward pass of the module, nothing else."""
        x = torch.as_tensor(x_np, device=device).requires_grad_(True)
        logits = module._forward({Columns.OBS: x})[Columns.ACTION_DIST_INPUTS]
        greedy = logits.gather(1, logits.argmax(dim=1, keepdim=True))
        (gradient,) = torch.autograd.grad(greedy.sum(), x)
        return gradient.cpu().numpy()  # (waits for a GPU's work, as explain() does)

    def ours(x_np: np.ndarray) -> np.ndarray:
        return explain(module, x_np, "gradient", "action", batch_size=4096).values

    row: dict = {
        "torch_threads": torch.get_num_threads(),
        "device": str(device) if device == "cpu" else torch.cuda.get_device_name(),
        "repeats": repeats,
        "torch": torch.__version__,
    }
    module.eval()  # the bare loop runs in eval mode too (explain() switches to it itself)
    singles = rng.normal(size=(per_sample, 4)).astype(np.float32)
    # Same numbers one at a time (and warm-up).
    single = np.concatenate([bare(x[None]) for x in singles])
    np.testing.assert_allclose(single, ours(singles), rtol=1e-5, atol=1e-7)
    per_sample_times: list[float] = []  # seconds per observation, PER_SAMPLE_ROWS at a time
    for n in sizes:
        obs = rng.normal(size=(n, 4)).astype(np.float32)
        np.testing.assert_allclose(ours(obs), bare(obs), rtol=1e-5, atol=1e-7)  # same numbers (and warm-up)
        times: dict[str, list[float]] = {"ours": [], "bare": []}
        for k in range(repeats):
            for name, fn in (("ours", ours), ("bare", bare)):
                start = time.perf_counter()
                fn(obs)
                times[name].append(time.perf_counter() - start)
            # The per-sample loop alternates with them too, a few observations per repeat, so the
            # machine's noise hits all three alike.
            first = (k * PER_SAMPLE_ROWS) % per_sample
            chunk = singles[first : first + PER_SAMPLE_ROWS]
            start = time.perf_counter()
            for x in chunk:
                bare(x[None])
            per_sample_times.append((time.perf_counter() - start) / len(chunk))
        for name, values in times.items():
            row[f"{name}_s_{n}"] = statistics.fmean(values)
            row[f"{name}_s_{n}_stdev"] = statistics.stdev(values) if len(values) > 1 else 0.0
            row[f"{name}_s_{n}_median"] = statistics.median(values)
        row[f"ours_over_bare_{n}"] = row[f"ours_s_{n}"] / row[f"bare_s_{n}"]
        row[f"ours_over_bare_{n}_median"] = row[f"ours_s_{n}_median"] / row[f"bare_s_{n}_median"]

    row["per_sample_s_per_obs"] = statistics.fmean(per_sample_times)
    row["per_sample_s_per_obs_median"] = statistics.median(per_sample_times)
    row["per_sample_count"] = len(per_sample_times) * PER_SAMPLE_ROWS
    for n in sizes:
        row[f"per_sample_over_ours_{n}"] = row["per_sample_s_per_obs"] / (row[f"ours_s_{n}"] / n)
        row[f"per_sample_over_ours_{n}_median"] = row["per_sample_s_per_obs_median"] / (
            row[f"ours_s_{n}_median"] / n
        )
        row[f"per_sample_over_bare_{n}_median"] = row["per_sample_s_per_obs_median"] / (
            row[f"bare_s_{n}_median"] / n
        )
    algo.stop()
    ray.shutdown()
    return row


def table(row: dict, sizes: tuple[int, ...]) -> str:
    lines = [
        "| N | explain (ms/batch, median) | bare autograd (ms/batch, median) | per-sample loop "
        "(ms per N observations, median) | ours ÷ bare (mean / median) | per-sample ÷ ours "
        "| per-sample ÷ bare (the floor) |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in sizes:
        lines.append(
            f"| {n} | {row[f'ours_s_{n}_median'] * 1e3:.2f} | {row[f'bare_s_{n}_median'] * 1e3:.2f} "
            f"| {row['per_sample_s_per_obs_median'] * n * 1e3:,.0f} "
            f"| {row[f'ours_over_bare_{n}']:.2f}× / {row[f'ours_over_bare_{n}_median']:.2f}× "
            f"| {row[f'per_sample_over_ours_{n}_median']:,.0f}× "
            f"| {row[f'per_sample_over_bare_{n}_median']:,.0f}× |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: N=256 only, 5 repeats, 32 samples")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--per-sample", type=int, default=256, help="observations in the per-sample loop")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu", help='where the module computes: "cpu" or "cuda"')
    args = parser.parse_args()
    sizes = (256,) if args.quick else (256, 4096)
    repeats, per_sample = (5, 32) if args.quick else (args.repeats, args.per_sample)
    row = measure(sizes, repeats, per_sample, args.threads, args.device)
    print(table(row, sizes))
    print(
        f"\n{repeats} alternating repeats on {row['device']}, {row['torch_threads']} torch thread(s); "
        "per-sample loop: "
        f"{row['per_sample_s_per_obs_median'] * 1e6:.0f} µs per observation (median; mean "
        f"{row['per_sample_s_per_obs'] * 1e6:.0f} µs), {PER_SAMPLE_ROWS} observations per repeat "
        "(its batch time is that × N). Ratios to the per-sample loop use medians."
    )
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        # One file per thread count: 1 thread is an env runner's setting, more a learner's.
        name = "engine_torch.json" if args.threads == 1 else f"engine_torch_{args.threads}threads.json"
        if args.device != "cpu":
            name = f"engine_torch_{args.device}.json"
        (RESULTS / name).write_text(json.dumps(row, indent=2))
        print(f"JSON: {RESULTS / name}")


if __name__ == "__main__":
    main()
