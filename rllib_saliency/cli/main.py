"""The command line: argument parsing, ``main()``, and the driver shared by both commands."""

from __future__ import annotations

import argparse
import atexit
import importlib
import logging
import os
import pathlib
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Sequence
from typing import NoReturn

import numpy as np

from rllib_saliency.cli import explain, maximize, movie
from rllib_saliency.cli.arguments import DEFAULT_EPISODES
from rllib_saliency.cli.common import (
    Context,
    process_age,
    progress,
    seconds_total,
    stopwatch,
    tensorboard_command,
)
from rllib_saliency.cli.errors import PROG, CLIError
from rllib_saliency.cli.observations import check_obs_shape, load_obs_file
from rllib_saliency.stacks import checkpoint_stack, inspect_checkpoint


def _import_modules(modules: Sequence[str]) -> None:
    # Console scripts do not put the current directory on the import path; `python -m` does.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name and (module == error.name or module.startswith(error.name + ".")):
                raise CLIError(
                    f"--import {module}: no module named {error.name!r} on the import path; run from "
                    "the directory that holds it or add that directory to PYTHONPATH."
                ) from error
            raise CLIError(f"--import {module}: importing it failed: {error}.") from error
        except Exception as error:  # noqa: BLE001 - the user's module failed; say which and why
            raise CLIError(
                f"--import {module}: importing it raised {type(error).__name__}: {error}. "
                "(Run with --debug for the traceback.)"
            ) from error


def _run(args: argparse.Namespace, compute: Callable[[Context], list[str]], needs_data: bool) -> int:
    # Every phase is timed, one after the other, so the phases add up to the total: Python's
    # start-up and the CLI's imports (before this function), RLlib's import, the user's --import
    # modules, reading the checkpoint, loading, rolling out, the command's own work, and writing
    # its files.
    timings: dict[str, float] = {"start-up": process_age() or 0.0}
    lap = stopwatch(timings)
    if not args.verbose:
        # RLlib's warnings (deprecations, "install gputil") are noise for this command.
        logging.getLogger("ray").setLevel(logging.ERROR)
    _import_modules(args.imports)
    if args.imports:
        lap("--import")
    # E.g. a new-stack checkpoint is a torch one: RLlib's import then skips TensorFlow (7-22 s).
    checkpoint_stack(args.checkpoint).before_rllib_import()
    import ray.rllib  # noqa: F401 - seconds on its own; reading any checkpoint needs it

    lap("RLlib import")
    checkpoint = inspect_checkpoint(args.checkpoint, args.policy)
    stack = checkpoint_stack(checkpoint)
    obs_file = load_obs_file(args.obs) if args.obs else None
    episodes = DEFAULT_EPISODES if args.episodes is None else args.episodes
    if obs_file is None and episodes < (1 if needs_data else 0):
        raise CLIError(
            f"--episodes must be at least {1 if needs_data else 0}; got {episodes} "
            "(or pass observations with --obs FILE)."
        )
    rollout = obs_file is None and episodes > 0
    args.check(args, checkpoint)
    if getattr(args, "init", None) == "samples" and obs_file is None and not rollout:
        raise CLIError(
            "--init samples starts from observations: roll out with --episodes N (N >= 1) or pass "
            "--obs FILE; or use --init random."
        )
    if obs_file is not None and checkpoint.obs_shape is not None:
        check_obs_shape(obs_file, checkpoint.obs_shape, checkpoint.policy_id, f"--obs {args.obs}")
    # Checks that need no TensorFlow objects: fail fast.
    stack.check_loadable(checkpoint, rollout)
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as error:
        raise CLIError(f"--out {args.out!r}: cannot create it ({error}).") from error

    if not args.verbose:
        # Importing ray set its logger back to INFO; RLlib's deprecation notices are noise here,
        # and so is torch's notice that a CUDA build found no GPU.
        logging.getLogger("ray").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", message="CUDA initialization")
    lap("checkpoint")
    # No Ray instance: both stacks load and roll out in this process.
    runner = None
    try:
        observations = actions = episode_ids = None
        states: tuple[np.ndarray, ...] = ()
        agent_ids = None
        # The model to explain, and what rolls it out where the stack needs more than the model
        # (an old-stack algorithm's env runner; a multi-agent checkpoint's every module), else None.
        policy, runner = stack.load(checkpoint, rollout, args.seed)
        lap("load")
        if obs_file is not None:
            shape = tuple(policy.observation_space.shape)
            observations = check_obs_shape(obs_file, shape, checkpoint.policy_id, f"--obs {args.obs}")
            source = f"{len(observations)} observations from {args.obs}"
        elif rollout:
            with progress(args, total=episodes, desc="rollout", unit="episode") as bar:
                rollouts = stack.rollouts(checkpoint, policy, runner, episodes, args.seed, bar)
            lap("rollout")
            observations, actions, episode_ids = rollouts.observations, rollouts.actions, rollouts.episode_ids
            states, agent_ids = rollouts.states, rollouts.agent_ids
            source = f"{len(observations)} observations from {episodes} greedy episode(s)"
            if agent_ids is not None:
                source += f" (agents {', '.join(dict.fromkeys(agent_ids.tolist()))})"
        else:
            source = "no observations"
        context = Context(
            args=args,
            checkpoint=checkpoint,
            policy=policy,
            observations=observations,
            actions=actions,
            episode_ids=episode_ids,
            states=states,
            source=source,
            timings=timings,
            step=args.step if args.step is not None else checkpoint.step,
            agent_ids=agent_ids,
        )
        before = seconds_total(timings)
        lap("compute")  # the moments since the last phase
        written = compute(context)
        # The command times its own work (e.g. "attribution"); the rest of it is writing its files.
        by_command = seconds_total(timings) - before - timings["compute"]
        lap("compute")
        timings["writing"] = timings.pop("compute") - by_command
    finally:
        stack.release(runner)
    timings["total"] = seconds_total(timings)
    _print_summary(context, written, timings)
    return 0


def _print_summary(context: Context, written: list[str], timings: dict[str, float]) -> None:
    what = checkpoint_stack(context.checkpoint).MODEL_WORD
    print(f"{PROG} {context.args.command}: {what} {context.checkpoint.policy_id!r}, {context.source}")
    for note in context.notes:
        print(note)
    print("wrote:")
    for path in written:
        print(f"  {path}")
    parts = [f"{name} {seconds:.2f} s" for name, seconds in timings.items() if name not in ("total", "cost")]
    print(f"time: {timings['total']:.2f} s total ({', '.join(parts)})")
    if "cost" in timings:
        print(f"cost: {timings['cost']}")
    pages = [path for path in written if path.endswith(".html")]
    if any(".tfevents." in os.path.basename(path) for path in written):
        print(f"view: {tensorboard_command(context.args.out)}")
    elif pages:  # movie: no events, the explorer pages are what to look at
        print(f"view: open {pathlib.Path(os.path.abspath(pages[0])).as_uri()} in a browser")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Saliency and activation maximization for RLlib checkpoints: torch RLModules "
        "(new API stack) and TensorFlow policies (old API stack).",
        epilog=f"Run '{PROG} COMMAND --help' for the options of a command.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    explain.add_parser(commands)
    maximize.add_parser(commands)
    movie.add_parser(commands)
    return parser


def console_script() -> NoReturn:
    """The ``rllib-saliency`` console script and ``python -m rllib_saliency.cli``: :func:`main`, then
    exit without the interpreter's teardown. With TensorFlow or torch loaded, freeing every
    module's objects took ~2.5 s of CPU after the command was done (a 15 s run on 2 cores); by then
    the command's files are closed. Exit handlers (``atexit``, the user's
    ``--import`` modules' too) and other threads still finish first; an exception that escapes
    :func:`main` exits the usual way, with its traceback."""
    code = main()
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # what the interpreter runs at exit; os._exit skips the rest
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``rllib-saliency`` command on ``argv`` (default: ``sys.argv[1:]``); returns the exit code
    (:func:`console_script` exits with it)."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args, args.compute, args.needs_data)
    except CLIError as error:
        if args.debug:
            traceback.print_exc()
        print(f"{PROG} {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
