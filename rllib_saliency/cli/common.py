"""What both commands share: the loaded context, argument checks, progress bars and output helpers."""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rllib_saliency.cli.checkpoint import Checkpoint
from rllib_saliency.cli.errors import CLIError, library_call


@dataclass
class Context:
    """What both commands share once the checkpoint is loaded."""

    args: argparse.Namespace
    checkpoint: Checkpoint
    policy: Any
    observations: np.ndarray | None
    actions: np.ndarray | None
    episode_ids: np.ndarray | None
    states: tuple[np.ndarray, ...]
    source: str
    timings: dict[str, float]
    step: int
    notes: list[str] = field(default_factory=list)


def progress(args: argparse.Namespace, **kwargs: Any) -> Any:
    from tqdm import tqdm

    return tqdm(file=sys.stderr, disable=args.quiet, dynamic_ncols=True, **kwargs)


def duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{1e3 * seconds:.2f} ms"
    return f"{1e6 * seconds:.1f} µs"


def check_positive(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        if getattr(args, name) < 1:
            raise CLIError(
                f"--{name.replace('_', '-')} must be a positive integer; got {getattr(args, name)}."
            )


def check_target(target: str, checkpoint: Checkpoint) -> None:
    from rllib_saliency.targets import parse_target

    if checkpoint.action_space is not None:
        library_call(parse_target, target, checkpoint.action_space)


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def feature_names_arg(arg: str | None, layout_names: list[str], size: int) -> list[str]:
    if arg is None:
        return layout_names
    names = [n.strip() for n in arg.split(",")]
    if len(names) != size:
        raise CLIError(
            f"--feature-names has {len(names)} names, but the observations have {size} features "
            f"(default names: {', '.join(layout_names)})."
        )
    return names


def write_png(path: str, png: bytes, written: list[str]) -> None:
    with open(path, "wb") as file:
        file.write(png)
    written.append(path)
