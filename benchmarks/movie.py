"""Movie benchmark: per-frame cost of a Pong saliency movie, both heads, against Greydanus' method.

A PPO policy on Atari Pong (old API stack, graph-mode TF, RLlib's DeepMind
preprocessing: 84×84×4 uint8 observations through RLlib's vision network) with
**untrained** (freshly initialised) weights: the timings do not depend on what the
weights are. Real Pong observations come from the policy's own env runner. Every
number covers both heads of a movie step: the actor (the taken action's logit)
and the critic (the value), as ``rllib-saliency movie`` computes them with
``rllib_saliency.movie.data.compute_movie_data`` (which also runs the forward
pass for values and action probabilities).

  (a) gradient: ``method="gradient"``, batched over the episode's frames;
  (b) occlusion, batched across frames: ``method="occlusion"`` with
      Greydanus' perturbation, ``fill="blur", blur_sigma=3, mask="gaussian",
      mask_sigma=5, stride=5``: 17×17 = 289 grid points on 84×84, each one
      forward pass of all frames at once;
  (c) the reference, written here after Greydanus et al. 2018, "Visualizing and
      Understanding Atari Agents", code github.com/greydanus/visualize_atari
      (``saliency.py``: ``score_frame``, ``get_mask``, ``occlude``; radius and
      density 5 as in ``make_movie.py``): one frame at a time, for each grid point
      ``(i, j)`` a mask from ``get_mask`` (a one-pixel disc blurred with sigma 5,
      divided by its max), the perturbed frame ``I·(1−M) + gaussian_filter(I, 3)·M``
      (the blur recomputed per perturbation, as ``occlude`` does), one forward
      pass of that single frame, score ``0.5·Σ(L − l)²`` over the head's outputs
      (all 6 logits for the actor, the value for the critic), then the 17×17 scores
      resized bilinearly to the frame. Differences, none in its disfavour: their
      frames are 80×80 and ``range(0, 80, 5)`` gives 16×16 points; here the same
      stride over 84×84 gives the 17×17 = 289 points (c) and (b) both use; their
      ``prepro`` of the raw screen per perturbation is left out (our observations
      are preprocessed already); their model is a small PyTorch LSTM, here it is the
      policy's own model run by ``session.run`` on its output tensors (the cheapest
      single-frame forward pass RLlib's graph policy has). Its per-frame time is
      reported with the share spent inside the forward passes.

Also the explorer page (``rllib_saliency.movie.page.write_page``) of a 1,000-step
episode of real Pong observations with gradient maps of both heads: its size, the
time to write it, and the time headless Chromium takes to load it and run its
scripts (``--dump-dom``; the same command on an empty page subtracted, alternating,
medians), checked by the value curve having one point per step.

Timed approaches alternate within each repeat (the order rotating) and medians are
reported: the ratios are the result, measured in one run on one machine.
Prints a table and writes benchmarks/results/movie.json.

Usage: python benchmarks/movie.py [--frames 256] [--occlusion-frames 64]
       [--reference-frames 3] [--repeats 3] [--page-steps 1000] [--page-loads 5]
"""

from __future__ import annotations

# isort: off
import rllib_saliency  # noqa: F401  (first: selects tf-keras before TensorFlow loads Keras)

# isort: on
import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).with_name("results")
GRID = {"fill": "blur", "blur_sigma": 3.0, "mask": "gaussian", "mask_sigma": 5.0, "stride": 5}
RADIUS = DENSITY = 5  # visualize_atari/make_movie.py


def make_pong(config):
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    return gym.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.0)


def pong_policy(steps: int):
    """An untrained old-stack TF PPO Pong policy and ``steps`` of its own experience."""
    from ray import tune
    from ray.rllib.algorithms.ppo import PPOConfig

    tune.register_env("pong_benchmark", make_pong)
    config = (
        PPOConfig()
        .api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)
        .environment("pong_benchmark")
        .framework("tf")
        .env_runners(num_env_runners=0, rollout_fragment_length=steps)
        .training(train_batch_size=steps, minibatch_size=min(steps, 128), num_epochs=1)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    batch = algo.env_runner.sample()
    batch = getattr(batch, "policy_batches", {}).get("default_policy", batch)  # MultiAgentBatch
    return algo, algo.get_policy(), batch


def record_of(batch, start: int, length: int):
    from rllib_saliency.movie.rollout import EpisodeRecord

    rows = slice(start, start + length)
    return EpisodeRecord(
        observations=np.asarray(batch["obs"][rows]),
        actions=np.asarray(batch["actions"][rows]),
        rewards=np.asarray(batch["rewards"][rows], np.float32),
    )


# --- (c) the reference: visualize_atari's saliency.py, one frame at a time ----------------------


def get_mask(center, size, r):
    """visualize_atari ``get_mask``: a one-pixel disc blurred with sigma ``r``, peak 1."""
    from scipy.ndimage import gaussian_filter

    y, x = np.ogrid[-center[0] : size[0] - center[0], -center[1] : size[1] - center[1]]
    keep = x * x + y * y <= 1
    mask = np.zeros(size)
    mask[keep] = 1
    mask = gaussian_filter(mask, sigma=r)
    return mask / mask.max()


def occlude(frame, mask):
    """visualize_atari ``occlude`` on a stack of frames ``(H, W, C)``: blur where the mask is."""
    from scipy.ndimage import gaussian_filter

    mask = mask[..., None]
    return frame * (1 - mask) + gaussian_filter(frame, sigma=(3, 3, 0)) * mask


class Reference:
    """``score_frame`` for both heads, the policy's model run on one frame per pass."""

    def __init__(self, policy) -> None:
        self.session = policy.get_session()
        self.obs = policy._input_dict["obs"]
        self.heads = {
            "actor": policy._dist_inputs,
            "critic": policy.extra_compute_action_fetches()["vf_preds"],
        }
        self.forward_s = 0.0

    def run_through_model(self, frame, mode):
        start = time.perf_counter()
        out = self.session.run(self.heads[mode], {self.obs: frame[None]})
        self.forward_s += time.perf_counter() - start
        return out

    def score_frame(self, frame, r, d, mode):
        import cv2

        height, width = frame.shape[:2]
        L = self.run_through_model(frame, mode)
        scores = np.zeros((len(range(0, height, d)), len(range(0, width, d))))
        for i in range(0, height, d):
            for j in range(0, width, d):
                mask = get_mask(center=[i, j], size=[height, width], r=r)
                l = self.run_through_model(occlude(frame, mask), mode)  # noqa: E741  (their name)
                scores[i // d, j // d] = 0.5 * float(np.sum((L - l) ** 2))
        return cv2.resize(scores, dsize=(width, height), interpolation=cv2.INTER_LINEAR).astype(np.float32)

    def movie_maps(self, frames):
        """Both heads' maps of each frame; returns (maps, seconds inside forward passes)."""
        self.forward_s = 0.0
        maps = [
            (self.score_frame(f, RADIUS, DENSITY, "actor"), self.score_frame(f, RADIUS, DENSITY, "critic"))
            for f in frames.astype(np.float32)
        ]
        return maps, self.forward_s


# --- the explorer page in headless Chromium ------------------------------------------------------


MARK = "<script>document.body.dataset.readyMs = performance.now().toFixed(1);</script>"


def chromium_load_s(chromium: str, page: Path, blank: Path, loads: int, steps: int) -> dict:
    """Headless Chromium on a copy of the page with one line added after the page's own script
    (which runs synchronously at the end of the body): the time from navigation start to the
    end of the page's scripts, read back from the dumped DOM. Also the whole command's wall
    time against an empty page's (browser start-up included, then subtracted)."""
    import re

    marked = page.with_name("marked.html")
    text = page.read_text(encoding="utf-8")
    assert text.rstrip().endswith("</body></html>")
    marked.write_text(text.rstrip()[: -len("</body></html>")] + MARK + "</body></html>", encoding="utf-8")
    blank.write_text(
        f"<!doctype html><html><head><title>blank</title></head><body><p>blank</p>{MARK}</body></html>"
    )
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"]

    def load(path: Path) -> tuple[float, float]:
        start = time.perf_counter()
        result = subprocess.run(
            [chromium, *flags, path.resolve().as_uri()], capture_output=True, text=True, timeout=300
        )
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            raise RuntimeError(f"chromium failed on {path.name}: {result.stderr[-2000:]}")
        dom = result.stdout
        ready = re.search(r'data-ready-ms="([0-9.]+)"', dom)
        if ready is None:
            raise RuntimeError(f"{path.name}: the scripts did not finish: {result.stderr[-2000:]}")
        if path == marked:
            chart = re.search(r'<svg id="chart-value".*?</svg>', dom, re.S)
            points = re.search(r'<polyline[^>]*points="([^"]*)"', chart.group(0)) if chart else None
            if points is None or len(points.group(1).split()) != steps or 'data-ready="1"' not in dom:
                raise RuntimeError("the page did not draw its value curve with one point per step")
        return elapsed, float(ready.group(1)) / 1e3

    load(blank)  # warm the disk cache and the browser's own files
    runs = {marked: [], blank: []}
    for k in range(loads):
        for path in (marked, blank)[:: 1 if k % 2 == 0 else -1]:
            runs[path].append(load(path))
    med = {path: [statistics.median(t[i] for t in times) for i in (0, 1)] for path, times in runs.items()}
    return {
        "scripts_done_s": med[marked][1],
        "blank_scripts_done_s": med[blank][1],
        "command_s": med[marked][0],
        "blank_command_s": med[blank][0],
        "command_minus_blank_s": med[marked][0] - med[blank][0],
    }


# --- measuring -------------------------------------------------------------------------------------


def measure(args) -> dict:
    import ray

    from rllib_saliency.movie.data import compute_movie_data
    from rllib_saliency.movie.page import write_page

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    steps = max(args.frames, args.occlusion_frames, args.reference_frames, args.page_steps)
    algo, policy, batch = pong_policy(steps)
    assert policy.observation_space.shape == (84, 84, 4), policy.observation_space
    grid_points = len(range(0, 84, GRID["stride"])) ** 2
    gradient_record = record_of(batch, 0, args.frames)
    occlusion_record = record_of(batch, 0, args.occlusion_frames)
    reference_frames = np.asarray(batch["obs"][: args.reference_frames])
    reference = Reference(policy)

    def movie(record, method, options):
        return compute_movie_data(
            policy, record, method, dict(options), policy_id="default_policy", checkpoint="benchmark"
        )[0]

    # Warm-up (builds and traces), and a check that (b) and (c) look at the same places.
    movie(gradient_record, "gradient", {})
    ours = movie(record_of(batch, 0, 2), "occlusion", GRID)
    theirs, _ = reference.movie_maps(reference_frames[:1])
    agreement = float(np.corrcoef(np.abs(ours.critic[0, ..., 0]).ravel(), theirs[0][1].ravel())[0, 1])

    approaches = {
        "gradient": (args.frames, lambda: movie(gradient_record, "gradient", {})),
        "occlusion": (args.occlusion_frames, lambda: movie(occlusion_record, "occlusion", GRID)),
        "reference": (args.reference_frames, lambda: reference.movie_maps(reference_frames)),
    }
    per_frame = {name: [] for name in approaches}
    reference_forward_share = []
    names = list(approaches)
    for r in range(args.repeats):
        for name in names[r % 3 :] + names[: r % 3]:
            frames, run = approaches[name]
            start = time.perf_counter()
            out = run()
            elapsed = time.perf_counter() - start
            per_frame[name].append(elapsed / frames)
            if name == "reference":
                reference_forward_share.append(out[1] / elapsed)
    medians = {name: statistics.median(times) for name, times in per_frame.items()}

    # A single-frame forward pass of both heads, for scale.
    obs = reference_frames[:1].astype(np.float32)
    fetches = list(reference.heads.values())
    single = []
    for _ in range(50):
        start = time.perf_counter()
        reference.session.run(fetches, {reference.obs: obs})
        single.append(time.perf_counter() - start)

    # The explorer page of a 1,000-step episode (gradient maps of both heads).
    page_data = movie(record_of(batch, 0, args.page_steps), "gradient", {})
    with tempfile.TemporaryDirectory() as folder:
        page, blank = Path(folder) / "episode_0.html", Path(folder) / "blank.html"
        write_times = []
        for _ in range(3):
            start = time.perf_counter()
            size = write_page(str(page), page_data, fps=8.0, title="Pong benchmark")
            write_times.append(time.perf_counter() - start)
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        browser = (
            chromium_load_s(chromium, page, blank, args.page_loads, args.page_steps)
            if chromium
            else {"scripts_done_s": None}
        )
    algo.stop()
    ray.shutdown()
    return {
        "policy": "PPO Pong, old API stack, graph-mode TF, untrained weights, obs (84, 84, 4)",
        "heads": "actor (taken action's logit) and critic (value), per frame both",
        "grid_points": grid_points,
        "frames": {
            "gradient": args.frames,
            "occlusion": args.occlusion_frames,
            "reference": args.reference_frames,
        },
        "repeats": args.repeats,
        "s_per_frame": medians,
        "s_per_frame_all": per_frame,
        "single_frame_forward_both_heads_s": statistics.median(single),
        "reference_forward_share": statistics.median(reference_forward_share),
        "gradient_speedup_vs_reference": medians["reference"] / medians["gradient"],
        "occlusion_speedup_vs_reference": medians["reference"] / medians["occlusion"],
        # The same ratios against the reference's forward passes alone (its mask and blur
        # recomputation left out): what batching buys over a leaner one-frame-at-a-time loop.
        "gradient_speedup_vs_reference_forwards": medians["reference"]
        * statistics.median(reference_forward_share)
        / medians["gradient"],
        "occlusion_speedup_vs_reference_forwards": medians["reference"]
        * statistics.median(reference_forward_share)
        / medians["occlusion"],
        "occlusion_reference_map_correlation": agreement,
        "targets": {"gradient_speedup": 50, "occlusion_speedup": 5},
        "page": {
            "steps": args.page_steps,
            "bytes": size,
            "write_s": statistics.median(write_times),
            **browser,
        },
    }


def table(row: dict) -> str:
    s, g, o = row["s_per_frame"], row["gradient_speedup_vs_reference"], row["occlusion_speedup_vs_reference"]
    share = row["reference_forward_share"]
    lines = [
        "| per frame, both heads | ms / frame | vs reference | target |",
        "|---|---|---|---|",
        f"| (c) reference: Greydanus, one frame at a time, {row['grid_points']} perturbations × 2 heads "
        f"(forward passes {share:.0%} of it) | {s['reference'] * 1e3:,.0f} | 1× | |",
        f"| (b) occlusion, blur fill + Gaussian mask, same grid, batched over "
        f"{row['frames']['occlusion']} frames | {s['occlusion'] * 1e3:,.1f} | {o:,.1f}× faster "
        f"| ≥ 5× {'met' if o >= 5 else 'missed'} |",
        f"| (a) gradient, batched over {row['frames']['gradient']} frames | {s['gradient'] * 1e3:,.2f} "
        f"| {g:,.0f}× faster | ≥ 50× {'met' if g >= 50 else 'missed'} |",
    ]
    page = row["page"]
    lines += [
        "",
        "| explorer page, {steps:,}-step Pong episode, gradient maps | |".format(steps=page["steps"]),
        "|---|---|",
        f"| size | {page['bytes'] / 2**20:.1f} MiB |",
        f"| written by `write_page` in | {page['write_s']:.2f} s |",
    ]
    if page["scripts_done_s"] is None:
        lines.append("| load in headless Chromium | n/a (no chromium) |")
    else:
        lines += [
            "| headless Chromium: navigation start to the page's scripts done "
            f"| {page['scripts_done_s']:.2f} s "
            f"(empty page: {page['blank_scripts_done_s']:.2f} s) |",
            f"| headless Chromium `--dump-dom` command, minus the same on an empty page "
            f"| {page['command_minus_blank_s']:.2f} s "
            f"({page['command_s']:.2f} − {page['blank_command_s']:.2f}) |",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=256, help="frames for the gradient maps")
    parser.add_argument("--occlusion-frames", type=int, default=64, help="frames for batched occlusion")
    parser.add_argument("--reference-frames", type=int, default=3, help="frames for the slow reference")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--page-steps", type=int, default=1000)
    parser.add_argument("--page-loads", type=int, default=5)
    args = parser.parse_args()
    row = measure(args)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "movie.json").write_text(json.dumps(row, indent=2))
    print(table(row))
    print(
        "\nagainst the reference's forward passes alone: gradient "
        f"{row['gradient_speedup_vs_reference_forwards']:,.0f}×, occlusion "
        f"{row['occlusion_speedup_vs_reference_forwards']:,.1f}× faster"
    )
    print(
        f"single-frame forward pass, both heads: {row['single_frame_forward_both_heads_s'] * 1e3:.2f} ms; "
        f"occlusion vs reference map correlation (critic, frame 0): "
        f"{row['occlusion_reference_map_correlation']:.2f}"
    )
    print(f"JSON: {RESULTS / 'movie.json'}")


if __name__ == "__main__":
    main()
