"""``rllib-saliency explain``: attributions of the policy's outputs to its observations."""

from __future__ import annotations

import argparse
import ast
import json
import os
import time
from collections.abc import Sequence
from typing import Any

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
from rllib_saliency.stacks import checkpoint_stack
from rllib_saliency.stacks.checkpoint import Checkpoint

HISTOGRAM_LIMIT = 10_000


def parse_method_options(items: Sequence[str]) -> dict[str, Any]:
    options = {}
    for item in items:
        key, separator, text = item.partition("=")
        if not separator or not key:
            raise CLIError(f"--method-option {item!r}: write KEY=VALUE, e.g. steps=16 or baseline=mean.")
        try:
            options[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            options[key] = text  # a bare word such as baseline=mean
    return options


def check_explain(args: argparse.Namespace, checkpoint: Checkpoint) -> None:
    """Arguments checked before the policy loads (when the spec tells enough)."""
    from rllib_saliency.methods import get_method

    check_positive(args, "batch_size", "num_cpus")
    if args.max_images < 0:
        raise CLIError(f"--max-images must be 0 or more; got {args.max_images}.")
    check_target(args.target, checkpoint)
    if checkpoint.obs_shape is not None:
        options = parse_method_options(args.method_option)
        library_call(get_method(args.method).check_options, options, checkpoint.obs_shape)


def run_explain(context: Context) -> list[str]:
    from rllib_saliency import render
    from rllib_saliency.backends import model_kind
    from rllib_saliency.engine import Attribution, explain
    from rllib_saliency.methods import get_method
    from rllib_saliency.recurrent import recurrent_layout
    from rllib_saliency.summaries import feature_layout, merge, summarize
    from rllib_saliency.targets import describe_target
    from rllib_saliency.writer import SaliencyWriter

    args, policy, pid = context.args, context.policy, context.checkpoint.policy_id
    obs = context.observations
    obs_shape = tuple(policy.observation_space.shape)
    options = parse_method_options(args.method_option)
    checked = library_call(get_method(args.method).check_options, options, obs_shape)
    # explain() takes "mean" baselines and SmoothGrad's noise scale from the batch it is
    # given: pass the mean of all observations explicitly, and give SmoothGrad everything
    # at once, so that the chunks (for the progress bar) add up to one explain() call.
    finite = np.all(np.isfinite(obs.reshape(len(obs), -1)), axis=1)
    if not finite.any():
        raise CLIError("every observation has NaN/inf values: nothing to explain.")
    call_options = dict(options)
    if isinstance(checked.get("baseline"), str) and checked["baseline"] == "mean" and finite.any():
        call_options["baseline"] = obs[finite].mean(axis=0)
    stack = checkpoint_stack(context.checkpoint)
    # --obs: e.g. the states an .npz holds (as written here), else the initial state.
    context.states = stack.states_to_explain(args.obs, policy, len(obs), context.states)
    chunk = len(obs) if args.method == "smoothgrad" else args.batch_size
    values = np.empty(obs.shape, np.float32)
    target_values = np.empty(len(obs), np.float32)
    delta = None
    compute_started = time.perf_counter()
    with progress(context.args, total=len(obs), desc=f"{args.method}/{args.target}", unit="obs") as bar:
        for start in range(0, len(obs), chunk):
            rows = slice(start, start + chunk)
            part = library_call(
                explain,
                policy,
                obs[rows],
                args.method,
                args.target,
                batch_size=args.batch_size,
                # Recurrent models: the state each step was taken in (initial state for --obs).
                state=tuple(s[rows] for s in context.states) if context.states else None,
                **call_options,
            )
            values[rows], target_values[rows] = part.values, part.target_values
            if part.delta is not None:
                delta = np.empty(len(obs), np.float32) if delta is None else delta
                delta[rows] = part.delta
            bar.update(len(obs[rows]))
    seconds = time.perf_counter() - compute_started
    context.timings["attribution"] = seconds
    context.timings["cost"] = f"{duration(seconds / len(obs))} per observation"  # type: ignore[assignment]
    attribution = Attribution(
        values=values,
        target_values=target_values,
        method=args.method,
        target=args.target,
        observations=obs,
        delta=delta,
        options=checked,
    )
    actions = context.actions
    if actions is None:
        actions = stack.greedy_actions(policy, obs, context.states)

    layout = feature_layout(policy.observation_space)
    rng = np.random.default_rng(args.seed)
    max_images = args.max_images if len(obs_shape) == 3 else 0
    (summary,) = merge([summarize(attribution, pid, rng, layout.parts, max_images)], max_images)
    names = feature_names_arg(
        args.feature_names, layout.names, len(summary.mean_abs), context.checkpoint.feature_names
    )
    shares: dict[str, float] = {}
    total = float(summary.mean_abs.sum())
    if layout.top_keys is not None and total > 0:
        for key, value in zip(layout.top_keys, summary.mean_abs, strict=True):
            shares[key] = shares.get(key, 0.0) + float(value) / total

    # Recurrent policies: the step inputs each observation was explained in (state_in_K, ...;
    # a stateful torch RLModule's state leaves: state_in_h, state_in_c, ...).
    state_names = recurrent_layout(policy).names if context.states else ()
    written: list[str] = []
    stem = f"{safe_name(pid)}_{safe_name(args.target)}_{safe_name(args.method)}"
    npz_path = os.path.join(args.out, f"attributions_{stem}.npz")
    np.savez_compressed(
        npz_path,
        observations=obs,
        actions=np.asarray(actions),
        attributions=values,
        target_values=target_values,
        **({"delta": delta} if delta is not None else {}),
        **({"episode_ids": context.episode_ids} if context.episode_ids is not None else {}),
        **({"agent_ids": context.agent_ids} if context.agent_ids is not None else {}),
        **dict(zip(state_names, context.states, strict=False)),
        feature_names=np.asarray(names),
        mean_abs=summary.mean_abs,
        policy_id=np.asarray(pid),
        method=np.asarray(args.method),
        target=np.asarray(args.target),
        options=np.asarray(json.dumps({k: repr(v) for k, v in options.items()})),
        checkpoint=np.asarray(context.checkpoint.path),
        step=np.asarray(context.step),
    )
    written.append(npz_path)

    title = f"{pid} / {args.target} / {args.method}"
    # As the training callback's charts: the options that change the picture, what the target is.
    meaning = describe_target(args.target, model_kind(policy), policy.action_space)
    subtitle = render.chart_subtitle(
        args.method, options, args.target, summary.map_values is not None, target_text=meaning
    )
    if summary.map_values is not None:
        importance = render.saliency_grid(
            summary.map_observations, summary.map_values, title, args.frame_maps, subtitle=subtitle
        )
    else:
        importance = render.importance_chart(summary.mean_abs, names, title, subtitle)
    write_png(os.path.join(args.out, f"importance_{stem}.png"), importance[0], written)

    prefix = f"saliency/{pid}/{args.target}/{args.method}"
    before = set(os.listdir(args.out))
    writer = SaliencyWriter(args.out)
    scalars = {f"{prefix}/mean_abs/{name}": v for name, v in zip(names, summary.mean_abs, strict=True)}
    scalars.update({f"{prefix}/share/{key}": v for key, v in shares.items()})
    writer.scalars(scalars, context.step)
    flat = values[finite].reshape(-1)
    sample = flat if len(flat) <= HISTOGRAM_LIMIT else rng.choice(flat, HISTOGRAM_LIMIT, replace=False)
    if len(sample):
        writer.histogram(
            f"{prefix}/distribution", sample, np.full(len(sample), len(flat) / len(sample)), context.step
        )
    writer.image(f"{prefix}/importance", *importance, context.step)
    writer.close()
    written += [os.path.join(args.out, name) for name in sorted(set(os.listdir(args.out)) - before)]
    return written


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The ``explain`` subcommand and its options."""
    from rllib_saliency.methods import METHODS

    explain = commands.add_parser(
        "explain",
        help="attribute the policy's outputs to its observations",
        description="Load a checkpoint, roll out N greedy episodes (or read --obs), compute attributions "
        "with rllib_saliency.explain and write attributions_*.npz (observations, actions, "
        "attributions, target values), importance_*.png and TensorBoard events (tags "
        "saliency/{policy}/{target}/{method}/mean_abs/{feature}, .../distribution, "
        ".../importance) into --out. Custom environments or models: --import the module that "
        "registers them.",
    )
    add_common_arguments(explain, needs_data=True)
    explain.add_argument(
        "--method", default="gradient", choices=list(METHODS), help="attribution method (default gradient)"
    )
    explain.add_argument(
        "--target",
        default="action",
        help="what to explain: action (greedy logit / mean of action dim 0; Q-networks: Q of the "
        "greedy action), action_K, logp (of the greedy action), value (Q-networks: max Q; SAC: min twin "
        "Q at the greedy action), advantage (dueling Q-networks) (default action)",
    )
    explain.add_argument(
        "--method-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option of the method, e.g. steps=16, baseline=mean, n_samples=50, noise_source=device "
        "(repeatable)",
    )
    explain.add_argument(
        "--batch-size",
        type=int,
        default=1024,
        help="observations per model call and per progress-bar update (default 1024)",
    )
    explain.add_argument(
        "--max-images",
        type=int,
        default=4,
        help="image observations: samples shown in the saliency image (default 4)",
    )
    explain.add_argument(
        "--frame-maps", action="store_true", help="image observations: also show each stacked frame's map"
    )
    explain.set_defaults(compute=run_explain, check=check_explain, needs_data=True)
