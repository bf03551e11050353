"""What both commands share: the loaded context, argument checks, progress bars and output helpers."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rllib_saliency.cli.errors import CLIError, library_call
from rllib_saliency.stacks.checkpoint import Checkpoint


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
    # Multi-agent rollouts (new API stack): the agent each observation belongs to.
    agent_ids: np.ndarray | None = None


def process_age() -> float | None:
    """Seconds since this process started (Python's start-up and the imports before ``main()``
    included), from Linux's /proc; None where that cannot be read."""
    try:
        with open("/proc/self/stat") as file:
            # Fields after the command name in parentheses start at field 3; starttime is field 22.
            start_ticks = int(file.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as file:
            uptime = float(file.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def stopwatch(timings: dict[str, float]) -> Callable[[str], None]:
    """``lap(name)`` adds the seconds since the previous lap (the first: since this call) to
    ``timings[name]``: consecutive phases that add up to the time measured."""
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        timings[name] = timings.get(name, 0.0) + now - mark
        mark = now

    return lap


def seconds_total(timings: dict[str, Any]) -> float:
    """The sum of the timed phases (``timings`` also holds text, e.g. ``cost``)."""
    return sum(v for v in timings.values() if isinstance(v, (int, float)))


def tensorboard_command(run_dir: str) -> str:
    """The command that shows ``run_dir`` in TensorBoard: the installed ``tensorboard`` beside this
    Python (an absolute path, if there), ``--logdir`` the absolute folder above ``run_dir`` so
    the run is listed under its own name (pointing at the run dir itself names it ".")."""
    executable = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "tensorboard")
    if not os.path.isfile(executable):
        executable = "tensorboard"
    logdir = os.path.dirname(os.path.abspath(run_dir))
    return f"{shlex.quote(executable)} --logdir {shlex.quote(logdir)}"


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


def feature_names_arg(
    arg: str | None, layout_names: list[str], size: int, saved: list[str] | None = None
) -> list[str]:
    """``--feature-names``, else the names training used (``saved``, from the checkpoint's
    callback settings, if they fit), else the observation layout's names."""
    if arg is None:
        return list(saved) if saved is not None and len(saved) == size else layout_names
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
