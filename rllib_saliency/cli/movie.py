"""``rllib-saliency movie``: one greedy episode at a time, through the agent's eyes.

Per episode ``k``: ``episode_{k}.gif`` (actor map in blue, critic map in red, or the
env's rendering beside per-feature bars), ``episode_{k}.html`` (a self-contained
explorer page) and ``episode_{k}.npz`` (the per-step data behind both). The
reusable parts live in :mod:`rllib_saliency.movie`.
"""

from __future__ import annotations

import argparse
import os
import time

from rllib_saliency.cli.common import Context, check_positive, duration, feature_names_arg, progress
from rllib_saliency.cli.errors import IMPORT_HELP, CLIError, library_call
from rllib_saliency.cli.explain import parse_method_options
from rllib_saliency.stacks import checkpoint_stack
from rllib_saliency.stacks.checkpoint import Checkpoint

DEFAULT_EPISODES = 1
DEFAULT_FPS = 8.0
PILLOW_HINT = "pip install 'rllib-saliency[movie]' (or pip install pillow)"


def _require_pillow() -> None:
    try:
        import PIL  # noqa: F401
    except ImportError as error:
        raise CLIError(
            f"the movie command writes GIFs and images with Pillow, which is not installed: {PILLOW_HINT}."
        ) from error


def check_movie(args: argparse.Namespace, checkpoint: Checkpoint) -> None:
    """Arguments checked before the policy loads."""
    from rllib_saliency.methods import get_method

    _require_pillow()
    check_positive(args, "movie_episodes", "batch_size", "num_cpus")
    if args.max_steps is not None and args.max_steps < 1:
        raise CLIError(f"--max-steps must be a positive integer; got {args.max_steps}.")
    if not args.fps > 0:
        raise CLIError(f"--fps must be positive; got {args.fps}.")
    checkpoint_stack(checkpoint).check_movie(checkpoint)
    if checkpoint.obs_shape is not None:
        options = parse_method_options(args.method_option)
        library_call(get_method(args.method).check_options, options, checkpoint.obs_shape)


def run_movie(context: Context) -> list[str]:
    from rllib_saliency.methods import get_method
    from rllib_saliency.movie import compute_movie_data, render_frames, write_gif, write_page
    from rllib_saliency.summaries import feature_layout

    args, policy, checkpoint = context.args, context.policy, context.checkpoint
    options = parse_method_options(args.method_option)
    obs_shape = tuple(policy.observation_space.shape)
    library_call(get_method(args.method).check_options, options, obs_shape)
    started = time.perf_counter()
    with progress(args, total=args.movie_episodes, desc="rollout", unit="episode") as bar:
        records = checkpoint_stack(checkpoint).play_movie(
            checkpoint, policy, args.movie_episodes, args.seed, args.max_steps, bar
        )
    context.timings["rollout"] = time.perf_counter() - started
    layout = feature_layout(policy.observation_space)
    names = layout.names
    if len(obs_shape) != 3:
        size = int(records[0].observations[0].size)
        names = feature_names_arg(
            args.feature_names,
            layout.names if len(layout.names) == size else [f"f{k}" for k in range(size)],
            size,
            checkpoint.feature_names,
        )
    steps = sum(len(r) for r in records)
    context.source = f"{len(records)} greedy episode(s), {steps} steps"
    written: list[str] = []
    attribution = drawing = 0.0
    with progress(args, total=steps, desc=f"{args.method} actor+critic", unit="step") as bar:
        for k, record in enumerate(records):
            for note in record.notes:
                if note not in context.notes:
                    context.notes.append(note)
            began = time.perf_counter()
            data, notes = library_call(
                compute_movie_data,
                policy,
                record,
                args.method,
                options,
                policy_id=checkpoint.policy_id,
                checkpoint=checkpoint.path,
                feature_names=names,
                batch_size=args.batch_size,
            )
            attribution += time.perf_counter() - began
            context.notes.extend(n for n in notes if n not in context.notes)
            began = time.perf_counter()
            stem = os.path.join(args.out, f"episode_{k}")
            data.save_npz(stem + ".npz")
            frames = write_gif(stem + ".gif", render_frames(data), args.fps)
            title = f"{checkpoint.policy_id} / episode {k} / {args.method}"
            page_bytes = write_page(stem + ".html", data, args.fps, title)
            drawing += time.perf_counter() - began
            written += [stem + ".gif", stem + ".html", stem + ".npz"]
            cut = " (cut at --max-steps)" if data.truncated_by_max_steps else ""
            gif_mb = os.path.getsize(stem + ".gif") / 1e6
            context.notes.append(
                f"episode {k}: {len(data)} steps{cut}, return {data.episode_return:.2f}; "
                f"gif {frames} frames, {gif_mb:.2f} MB; html {page_bytes / 1e6:.2f} MB"
            )
            bar.update(len(record))
    context.timings["attribution"] = attribution
    context.timings["gif+page"] = drawing
    context.timings["cost"] = f"{duration(attribution / max(steps, 1))} per step, both heads"  # type: ignore[assignment]
    return written


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The ``movie`` subcommand and its options."""
    from rllib_saliency.methods import METHODS

    movie = commands.add_parser(
        "movie",
        help="saliency movies of greedy episodes: GIF, HTML explorer page, per-step npz",
        description="Load a checkpoint, play N greedy episodes in its own environment and compute, at "
        "every step, the map of the actor (the taken action's logit) and of the critic (value). Per "
        "episode k, write into --out: episode_k.gif (image observations: the newest frame with the "
        "actor map in blue and the critic map in red; vector observations: the environment's "
        "rendering beside per-feature bars), episode_k.html (a self-contained page: timeline, "
        "overlays, value/reward/action-probability curves, bookmarks) and episode_k.npz.",
    )
    movie.add_argument(
        "checkpoint",
        metavar="CHECKPOINT",
        help="an algorithm checkpoint (either API stack) or an old-stack policy checkpoint",
    )
    movie.add_argument("--out", required=True, metavar="DIR", help="where the files go")
    movie.add_argument(
        "--policy", metavar="ID", help="the policy / module id (default: 'default_policy' or the only one)"
    )
    movie.add_argument(
        "--episodes",
        dest="movie_episodes",
        type=int,
        default=DEFAULT_EPISODES,
        metavar="N",
        help=f"episodes to play (default {DEFAULT_EPISODES})",
    )
    movie.add_argument(
        "--method", default="gradient", choices=list(METHODS), help="attribution method (default gradient)"
    )
    movie.add_argument(
        "--method-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option of the method, e.g. patch_size=8 (repeatable)",
    )
    movie.add_argument(
        "--max-steps",
        type=int,
        metavar="S",
        help="stop each episode after S steps (default: play it to its end)",
    )
    movie.add_argument(
        "--fps",
        type=float,
        default=DEFAULT_FPS,
        help=f"frames per second of the GIF and the page's player (default {DEFAULT_FPS:g})",
    )
    movie.add_argument(
        "--seed", type=int, default=0, help="episode k is reset with seed SEED + k (default 0)"
    )
    movie.add_argument(
        "--import", dest="imports", action="append", default=[], metavar="MODULE", help=IMPORT_HELP
    )
    movie.add_argument(
        "--feature-names", metavar="A,B,...", help="names of the vector observation's features for the bars"
    )
    movie.add_argument(
        "--batch-size", type=int, default=256, help="observations per model call (default 256)"
    )
    movie.add_argument(
        "--num-cpus",
        type=int,
        default=2,
        help="accepted as for explain; unused: the command starts no Ray instance (default 2)",
    )
    movie.add_argument("--quiet", action="store_true", help="no progress bars")
    movie.add_argument("--verbose", action="store_true", help="show Ray's and RLlib's log messages")
    movie.add_argument("--debug", action="store_true", help="show a traceback for every error")
    # What the shared driver reads: no --obs, and no rollout of its own (this command plays its episodes).
    movie.set_defaults(
        compute=run_movie, check=check_movie, needs_data=False, obs=None, episodes=0, step=None
    )
