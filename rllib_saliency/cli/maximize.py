"""``rllib-saliency maximize``: activation maximization, observations that drive a policy output up."""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from rllib_saliency.cli.arguments import add_common_arguments
from rllib_saliency.cli.common import (
    Context,
    check_positive,
    check_target,
    duration,
    feature_names_arg,
    progress,
    safe_name,
    write_png,
)
from rllib_saliency.cli.errors import CLIError, library_call
from rllib_saliency.stacks.checkpoint import Checkpoint


def check_maximize(args: argparse.Namespace, checkpoint: Checkpoint) -> None:
    check_positive(args, "steps", "n_starts", "num_cpus")
    for name, positive in (("lr", True), ("l2", False), ("tv", False)):
        value = getattr(args, name)
        if not np.isfinite(value) or value < 0 or (positive and value == 0):
            raise CLIError(
                f"--{name} must be a {'positive' if positive else 'non-negative'} number; got {value}."
            )
    if args.tv > 0 and checkpoint.obs_shape is not None and len(checkpoint.obs_shape) != 3:
        raise CLIError(
            f"--tv (total variation) applies to image observations (H, W, C); policy "
            f"{checkpoint.policy_id!r} observes shape {checkpoint.obs_shape}: leave --tv at 0."
        )
    check_target(args.target, checkpoint)


def run_maximize(context: Context) -> list[str]:
    from rllib_saliency import render
    from rllib_saliency.activation import maximize_activation
    from rllib_saliency.backends import model_kind
    from rllib_saliency.summaries import feature_layout
    from rllib_saliency.targets import describe_target
    from rllib_saliency.writer import SaliencyWriter

    args, policy, pid = context.args, context.policy, context.checkpoint.policy_id
    obs_shape = tuple(policy.observation_space.shape)
    compute_started = time.perf_counter()
    with progress(args, total=args.steps, desc=f"maximize {args.target}", unit="step") as bar:
        result = library_call(
            maximize_activation,
            policy,
            args.target,
            init=args.init,
            obs=context.observations,
            steps=args.steps,
            lr=args.lr,
            l2=args.l2,
            tv=args.tv,
            n_starts=args.n_starts,
            seed=args.seed,
            progress=lambda step: bar.update(1),
        )
    seconds = time.perf_counter() - compute_started
    context.timings["maximize"] = seconds
    context.timings["cost"] = (  # type: ignore[assignment]
        f"{duration(seconds / args.steps)} per step for {len(result.inputs)} starting point(s)"
    )
    written: list[str] = []
    stem = f"{safe_name(pid)}_{safe_name(args.target)}"
    npz_path = os.path.join(args.out, f"actmax_{stem}.npz")
    observations = context.observations
    if observations is None:
        observations = np.zeros((0, *obs_shape), np.float32)
    np.savez_compressed(
        npz_path,
        inputs=result.inputs,
        starts=result.starts,
        target_values=result.target_values,
        objective=result.objective,
        low=result.low,
        high=result.high,
        mean=result.mean,
        observations=observations,
        policy_id=np.asarray(pid),
        target=np.asarray(args.target),
        options=np.asarray(json.dumps(result.options)),
        checkpoint=np.asarray(context.checkpoint.path),
        step=np.asarray(context.step),
    )
    written.append(npz_path)

    best = result.best
    title = f"{pid} / {args.target}: activation maximization (best of {len(result.inputs)})"
    # As the training callback's chart: what the target is and the value reached.
    meaning = describe_target(args.target, model_kind(policy), policy.action_space)
    subtitle = f"{meaning}; reached {float(result.target_values[-1].max()):.3g}"
    if len(obs_shape) == 1:
        names = feature_names_arg(
            args.feature_names,
            feature_layout(policy.observation_space).names,
            obs_shape[0],
            context.checkpoint.feature_names,
        )
        picture = render.activation_chart(
            result.inputs[best], result.mean, result.low, result.high, names, title, subtitle
        )
    elif len(obs_shape) == 3:
        picture = render.activation_images(
            result.inputs[best], result.mean, result.low, result.high, title, subtitle
        )
    else:
        picture = None
    if picture is not None:
        write_png(os.path.join(args.out, f"actmax_{stem}.png"), picture[0], written)

    before = set(os.listdir(args.out))
    writer = SaliencyWriter(args.out)
    prefix = f"saliency/{pid}/actmax/{args.target}"
    writer.scalars({f"{prefix}/value": float(result.target_values[-1].mean())}, context.step)
    if picture is not None:
        writer.image(f"{prefix}/input", *picture, context.step)
    writer.close()
    written += [os.path.join(args.out, name) for name in sorted(set(os.listdir(args.out)) - before)]
    context.notes.append(
        f"target {args.target!r}: {result.target_values[0].mean():.4g} at the starting points -> "
        f"{result.target_values[-1].mean():.4g} after {args.steps} steps (mean over "
        f"{len(result.inputs)} starting points; best {result.target_values[-1, best]:.4g})"
    )
    return written


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The ``maximize`` subcommand and its options."""
    maximize = commands.add_parser(
        "maximize",
        help="find observations that maximise a policy output (activation maximization)",
        description="Load a checkpoint, roll out N greedy episodes (or read --obs) for starting points, "
        "the L2 anchor and the search box, run rllib_saliency.maximize_activation and write "
        "actmax_*.npz, actmax_*.png (optimised input next to the data mean) and TensorBoard "
        "events (saliency/{policy}/actmax/{target}/value) into --out. Custom environments or "
        "models: --import the module that registers them.",
    )
    add_common_arguments(maximize, needs_data=False)
    maximize.add_argument("--target", required=True, help="what to maximise: action, action_K, logp or value")
    maximize.add_argument(
        "--init",
        default="samples",
        choices=["samples", "random"],
        help="start from observations (samples, default) or uniformly in the search box (random)",
    )
    maximize.add_argument("--steps", type=int, default=200, help="gradient-ascent steps (default 200)")
    maximize.add_argument(
        "--lr",
        type=float,
        default=0.05,
        help="step size as a fraction of each feature's box width (default 0.05)",
    )
    maximize.add_argument(
        "--l2", type=float, default=1e-3, help="weight of the pull toward the data mean (default 1e-3)"
    )
    maximize.add_argument(
        "--tv", type=float, default=0.0, help="weight of total variation, image observations only (default 0)"
    )
    maximize.add_argument(
        "--n-starts", type=int, default=8, help="starting points optimised at once (default 8)"
    )
    maximize.set_defaults(compute=run_maximize, check=check_maximize, needs_data=False)
