"""Engine benchmark, new API stack: explain() on RLlib's default PPO torch module against a bare pass.

Models (``--model``, RLlib's ``DefaultPPOTorchRLModule`` built from its spec; untrained weights,
which the timings do not depend on):
  mlp: CartPole-shaped, obs (4,), 2 actions, RLlib's default 256x256 actor and critic encoders;
  cnn: Atari-shaped, obs (84, 84, 4) float32, 6 actions, conv 16/32/64/128 (8x8/4, 4x4/2, 3x3/2,
       3x3/1) and 256-unit heads: about 2.5 M parameters.
Rows (method x target x N), each against the bare minimum for the same numbers, the two alternating
call by call (medians, so machine noise hits both alike; each pair is first checked to agree):
  gradient: explain(module, obs, "gradient", target) against one ``torch.as_tensor``, the target's
      forward pass (action: pi(actor_encoder(obs)), the greedy logit by argmax; value:
      compute_values), one ``autograd.grad``, ``.cpu().numpy()``. Target: <= 1.2x at N >= 256,
      <= 1.5x at N = 64.
  integrated_gradients (``--steps``, zero baseline): against the bare batched pass over the same
      steps x N rows (built on the device, in the groups explain()'s pass-size rule allows), the
      greedy action resolved by a forward pass at x. Target: <= 1.3x.
  smoothgrad (``--samples``): against the bare batched pass over the same noisy rows, with the
      same numpy noise explain() draws (its seeded stream defines the method's numbers); a
      second bare row draws the noise on the device (torch.randn) to show what the numpy draws
      cost. Target: <= 1.3x.
Each row runs ``--row-seconds`` (at least 3 alternating pairs, at most ``--repeats``).
Writes JSON and a Markdown table to ``--out`` (default benchmarks/results/).

Usage: python benchmarks/engine_torch.py [--model mlp|cnn ...] [--device cpu|cuda] [--sizes 64 256 1024]
       [--methods gradient integrated_gradients smoothgrad] [--targets action value] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results")
CNN_FILTERS = [[16, [8, 8], 4], [32, [4, 4], 2], [64, [3, 3], 2], [128, [3, 3], 1]]
# Separate actor and critic encoders, as PPO's own config builds them.
MODELS = {
    "mlp": ((4,), 2, {"vf_share_layers": False}),
    "cnn": (
        (84, 84, 4),
        6,
        {"conv_filters": CNN_FILTERS, "head_fcnet_hiddens": [256], "vf_share_layers": False},
    ),
}
TARGETS = {"gradient": (1.5, 1.2), "integrated_gradients": (1.3, 1.3), "smoothgrad": (1.3, 1.3)}


def build_module(model: str, device: str) -> Any:
    import gymnasium as gym
    import numpy as np
    import torch
    from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    shape, actions, config = MODELS[model]
    torch.manual_seed(0)
    module = RLModuleSpec(
        module_class=DefaultPPOTorchRLModule,
        observation_space=gym.spaces.Box(-np.inf, np.inf, shape, np.float32),
        action_space=gym.spaces.Discrete(actions),
        model_config=DefaultModelConfig(**config),
    ).build()
    return module.to(device)


def observations(model: str, n: int, seed: int = 0) -> Any:
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = MODELS[model][0]
    if model == "cnn":
        return rng.uniform(0, 1, size=(n, *shape)).astype(np.float32)
    return rng.normal(size=(n, *shape)).astype(np.float32)


class Bare:
    """The bare passes: what a user writing it by hand for this module would run."""

    def __init__(self, module: Any, device: str) -> None:
        import torch
        from ray.rllib.core.columns import Columns
        from ray.rllib.core.models.base import ENCODER_OUT

        self.torch, self.module, self.device = torch, module, device
        self.obs_key, self.encoder_out = Columns.OBS, ENCODER_OUT

    def logits(self, x: Any) -> Any:
        module = self.module
        return module.pi(module.encoder.actor_encoder({self.obs_key: x})[self.encoder_out])

    def target(self, x: Any, target: str, columns: Any = None) -> Any:
        if target == "value":
            return self.module.compute_values({self.obs_key: x}).reshape(-1)
        logits = self.logits(x)
        if columns is None:  # the greedy logit of this very pass
            columns = logits.argmax(dim=1)
        return logits.gather(1, columns[:, None])[:, 0]

    def gradient(self, obs: Any, target: str) -> Any:
        x = self.torch.as_tensor(obs, device=self.device).requires_grad_(True)
        (gradient,) = self.torch.autograd.grad(self.target(x, target).sum(), x)
        return gradient.cpu().numpy()

    def _columns(self, x: Any, target: str) -> Any:
        if target == "value":
            return None
        with self.torch.no_grad():
            return self.logits(x).argmax(dim=1)

    def _weighted_gradients(self, x: Any, target: str, points: Any, weights: Any, group: int) -> Any:
        torch = self.torch
        n = len(x)
        columns = self._columns(x, target)
        total = torch.zeros_like(x)
        for first in range(0, len(weights), group):
            k = min(group, len(weights) - first)
            with torch.no_grad():
                rows = points(first, k).flatten(0, 1)
            rows.requires_grad_(True)
            tiled = None if columns is None else columns.repeat(k)
            (gradient,) = torch.autograd.grad(self.target(rows, target, tiled).sum(), rows)
            scale = weights[first : first + k].reshape(-1, *([1] * x.ndim))
            total += (scale * gradient.reshape(k, n, *x.shape[1:])).sum(dim=0)
        return total

    def integrated_gradients(self, obs: Any, target: str, steps: int, group: int) -> Any:
        import numpy as np

        torch = self.torch
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        alphas = torch.as_tensor((nodes + 1) / 2, dtype=torch.float32, device=self.device)
        weights = torch.as_tensor(weights / 2, dtype=torch.float32, device=self.device)
        x = torch.as_tensor(obs, device=self.device)
        shape = (-1, *([1] * x.ndim))
        integral = self._weighted_gradients(
            x, target, lambda first, k: alphas[first : first + k].reshape(shape) * x, weights, group
        )
        return (x * integral).cpu().numpy()

    def smoothgrad(self, obs: Any, target: str, samples: int, group: int, numpy_noise: bool) -> Any:
        import numpy as np

        torch = self.torch
        x = torch.as_tensor(obs, device=self.device)
        sigma = 0.15 * (x.amax(dim=0) - x.amin(dim=0))
        rng = np.random.default_rng((0, 0))  # explain()'s stream for rows 0.. of seed 0

        # noise_source="device": explain()'s torch generator for rows 0.. of seed 0 (N <= 1,024: one).
        state = np.random.SeedSequence((0, 0)).generate_state(1, np.uint64)[0]
        generator = torch.Generator(device=self.device).manual_seed(int(state >> 1))

        def points(first: int, k: int) -> Any:
            if numpy_noise:
                noise = torch.stack(
                    [torch.as_tensor(rng.standard_normal(obs.shape).astype(np.float32)) for _ in range(k)]
                ).to(self.device)
            else:
                noise = torch.stack(
                    [torch.randn(x.shape, generator=generator, device=self.device) for _ in range(k)]
                )
            return x + noise * sigma

        weights = torch.full((samples,), 1.0 / samples, device=self.device)
        return self._weighted_gradients(x, target, points, weights, group).cpu().numpy()


# --clock: "wall" (time.perf_counter), or "process" (time.process_time: this process's CPU time,
# for a CPU shared with other work, where time slices swamp wall-clock ratios; with one torch
# thread it is the work each call does, waits for a GPU excluded, so CPU only).
CLOCKS = {"wall": time.perf_counter, "process": time.process_time}
clock = CLOCKS["wall"]


def time_pair(
    ours: Any, bares: dict[str, Any], row_seconds: float, max_repeats: int
) -> dict[str, list[float]]:
    """Alternate ``ours`` and each bare call; enough pairs to fill ``row_seconds``, at least 3."""
    times: dict[str, list[float]] = {"ours": [], **{name: [] for name in bares}}
    calls = {"ours": ours, **bares}
    started = time.perf_counter()
    while True:
        for name, call in calls.items():
            start = clock()
            call()
            times[name].append(clock() - start)
        done = len(times["ours"])
        if done >= max_repeats or (done >= 3 and time.perf_counter() - started >= row_seconds):
            return times


def measure_row(module: Any, bare: Bare, model: str, obs: Any, method: str, target: str, args: Any) -> dict:
    import numpy as np
    import torch

    from rllib_saliency import explain
    from rllib_saliency.backends import backend_for

    n = len(obs)
    options: dict[str, Any] = {}
    if method == "integrated_gradients":
        options = {"steps": args.steps}
    elif method == "smoothgrad":
        options = {"n_samples": args.samples}
    points = args.steps if method == "integrated_gradients" else args.samples if method == "smoothgrad" else 1
    rows_per_call = n * points
    # The bare batched pass takes the groups explain()'s rule allows (all points at once if they fit).
    per_pass = backend_for(module).pass_rows(rows_per_call, obs.shape[1:], target == "value")
    group = max(1, min(points, per_pass // n)) if rows_per_call > 1024 else points

    def ours() -> Any:
        return explain(module, obs, method, target, **options).values

    def ours_device_noise() -> Any:
        return explain(module, obs, method, target, noise_source="device", **options).values

    bares: dict[str, Any]
    if method == "gradient":
        bares = {"bare": lambda: bare.gradient(obs, target)}
    elif method == "integrated_gradients":
        bares = {"bare": lambda: bare.integrated_gradients(obs, target, args.steps, group)}
    else:
        bares = {
            "bare": lambda: bare.smoothgrad(obs, target, args.samples, group, True),
            "bare_device_noise": lambda: bare.smoothgrad(obs, target, args.samples, group, False),
        }
    # Same numbers (and the warm-up). The bare passes take the greedy action from a pass of their
    # own; an untrained network's near-tied logits can pick another one for a few rows (another
    # kernel, other rounding): those rows are left out of the comparison, at most 5% of them.
    attribution = explain(module, obs, method, target, **options)
    got, expected = attribution.values, bares["bare"]()
    rows = np.ones(n, bool)
    if target == "action":
        with torch.no_grad():
            logits = bare.logits(torch.as_tensor(obs, device=obs_device(module)))
        columns = logits.argmax(dim=1).cpu().numpy()
        rows = columns == attribution.resolved.columns
        if rows.mean() < 0.95:
            raise AssertionError(f"{model} {method} N={n}: greedy actions differ on {1 - rows.mean():.0%}")
    scale = float(np.abs(expected[rows]).max()) or 1.0
    agreement = float(np.abs(got[rows] - expected[rows]).max() / scale)
    if agreement > 1e-3:
        raise AssertionError(f"{model} {method} {target} N={n}: explain and bare differ ({agreement:.2e})")
    if method == "smoothgrad" and n <= 1024:  # (one noise block: the bare pass's generator is explain's)
        device_noise = bares["bare_device_noise"]()
        difference = float(np.abs(ours_device_noise()[rows] - device_noise[rows]).max())
        if difference > 1e-3 * (float(np.abs(device_noise[rows]).max()) or 1.0):
            raise AssertionError(f"{model} smoothgrad {target} N={n}: device noise differs: {difference:.2e}")
        bares["ours_device_noise"] = ours_device_noise
    times = time_pair(ours, bares, args.row_seconds, args.repeats)
    row = {
        "model": model,
        "device": "cpu" if obs_device(module).type == "cpu" else torch.cuda.get_device_name(),
        "method": method,
        "target": target,
        "n": n,
        "rows_per_call": rows_per_call,
        "rows_per_pass": group * n,
        "pairs": len(times["ours"]),
        "max_relative_difference": agreement,
        "torch_threads": torch.get_num_threads(),
        "clock": "process" if clock is time.process_time else "wall",
    }
    for name, values in times.items():
        row[f"{name}_ms_median"] = statistics.median(values) * 1e3
        row[f"{name}_ms_mean"] = statistics.fmean(values) * 1e3
    row["ratio_median"] = row["ours_ms_median"] / row["bare_ms_median"]
    # each call's ratio to its own pair's bare call: robust to a load that drifts
    row["ratio_paired_median"] = statistics.median(
        o / b for o, b in zip(times["ours"], times["bare"], strict=True)
    )
    if "bare_device_noise" in times:
        row["ratio_to_device_noise_median"] = row["ours_ms_median"] / row["bare_device_noise_ms_median"]
    if "ours_device_noise" in times:  # explain(noise_source="device") against the same bare pass
        row["device_noise_ratio_median"] = (
            row["ours_device_noise_ms_median"] / row["bare_device_noise_ms_median"]
        )
    small, large = TARGETS[method]
    row["target_ratio"] = small if n < 256 else large
    row["met"] = row["ratio_median"] <= row["target_ratio"]
    return row


def obs_device(module: Any) -> Any:
    return next(module.parameters()).device


def measure(args: argparse.Namespace, device: str, report: Any) -> list[dict]:
    # isort: off
    import rllib_saliency  # noqa: F401  (first: a safe TF/torch import order for RLlib's new stack)

    # isort: on
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    rows: list[dict] = []
    for model in args.model:
        module = build_module(model, device)
        module.eval()  # the bare passes run in eval mode too (explain() switches to it itself)
        bare = Bare(module, device)
        for n in args.sizes:
            obs = observations(model, n)
            for method in args.methods:
                for target in args.targets:
                    row = measure_row(module, bare, model, obs, method, target, args)
                    rows.append(row)
                    report(row)
        del module, bare
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows


def line(row: dict) -> str:
    extra = ""
    if "ratio_to_device_noise_median" in row:
        extra = (
            f" (bare with device noise {row['bare_device_noise_ms_median']:.1f} ms: "
            f"{row['ratio_to_device_noise_median']:.2f}×)"
        )
    if "device_noise_ratio_median" in row:
        extra += (
            f"; noise_source='device' {row['ours_device_noise_ms_median']:.1f} ms, "
            f"÷ bare with device noise {row['device_noise_ratio_median']:.2f}×"
        )
    return (
        f"| {row['model']} | {row['device']} | {row['method']} | {row['target']} | {row['n']} | "
        f"{row['rows_per_call']} / {row['rows_per_pass']} | {row['ours_ms_median']:.2f} | "
        f"{row['bare_ms_median']:.2f} | {row['ratio_median']:.2f}× / "
        f"{row['ratio_paired_median']:.2f}×{extra} | "
        f"≤ {row['target_ratio']}×: {'met' if row['met'] else 'NOT met'} |"
    )


HEADER = (
    "| model | device | method | target | N | rows per call / per pass | explain (ms, median) "
    "| bare (ms, median) | explain ÷ bare (medians / paired) | target |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", nargs="+", choices=sorted(MODELS), default=["mlp", "cnn"])
    parser.add_argument("--device", default="cpu", help='"cpu" or "cuda"')
    parser.add_argument(
        "--cpu-if-no-cuda",
        action="store_true",
        help="with --device cuda on a machine without one: run on the CPU",
    )
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 256, 1024])
    parser.add_argument("--methods", nargs="+", choices=sorted(TARGETS), default=list(TARGETS))
    parser.add_argument("--targets", nargs="+", choices=["action", "value"], default=["action", "value"])
    parser.add_argument("--steps", type=int, default=16, help="Integrated Gradients steps")
    parser.add_argument("--samples", type=int, default=16, help="SmoothGrad noise samples")
    parser.add_argument(
        "--row-seconds", type=float, default=3.0, help="time spent per row (at least 3 pairs)"
    )
    parser.add_argument("--repeats", type=int, default=200, help="most alternating pairs per row")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="smoke run: N=64 only, 3 pairs per row")
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="wall", help="process: CPU time (a shared CPU only)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and the table")
    parser.add_argument("--name", default=None, help="file name stem (default engine_torch_<device>)")
    args = parser.parse_args()
    import torch

    global clock
    clock = CLOCKS[args.clock]
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        if not args.cpu_if_no_cuda:
            sys.exit("--device cuda: torch sees no CUDA device (--cpu-if-no-cuda runs on the CPU instead)")
        print("no CUDA device: running on the CPU (--cpu-if-no-cuda)", flush=True)
        device = "cpu"
    if args.quick:
        args.sizes, args.row_seconds, args.repeats = [64], 0.0, 3
    print(HEADER, flush=True)
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.name or f"engine_torch_{device}"
    done: list[dict] = []

    def report(row: dict) -> None:
        # Written after every row: a run stopped by a time limit keeps what it measured.
        done.append(row)
        print(line(row), flush=True)
        result = {
            "rows": done,
            "seconds": time.perf_counter() - started,
            "argv": sys.argv[1:],
            "torch": torch.__version__,
        }
        (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2))
        (args.out / f"{stem}.md").write_text("\n".join([HEADER, *map(line, done)]) + "\n")

    rows = measure(args, device, report)
    elapsed = time.perf_counter() - started
    met = sum(row["met"] for row in rows)
    print(f"\n{met} of {len(rows)} rows meet their target; {math.ceil(elapsed)} s; {args.out / stem}.json")


if __name__ == "__main__":
    main()
