"""Checks of the CLI's summary lines, and running CLI processes side by side, shared by the old- and
new-stack CLI tests."""

from __future__ import annotations

import functools
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

CLI = [sys.executable, "-m", "rllib_saliency.cli"]
CONSOLE_SCRIPT = str(Path(sys.executable).with_name("rllib-saliency"))


def check_time_and_view(stdout: str, out_dir: str, phases: list[str]) -> dict[str, float]:
    """The ``time:`` line names ``phases`` (among others) and they add up to its total; the
    ``view:`` line runs this environment's tensorboard (an absolute path) on the absolute
    folder above ``out_dir``, so the run is listed under its name. Returns the phases."""
    lines = stdout.splitlines()
    time_line = next(line for line in lines if line.startswith("time: "))
    total_text, parts_text = time_line[len("time: ") :].split(" s total (", 1)
    parts = {}
    for part in parts_text.rstrip(")").split(", "):
        name, seconds, unit = part.rsplit(" ", 2)
        assert unit == "s", time_line
        parts[name] = float(seconds)
    for phase in phases:
        assert phase in parts, (phase, time_line)
    # Rounded to 0.01 s each: the phases add up to the total.
    assert abs(sum(parts.values()) - float(total_text)) <= 0.006 * (len(parts) + 1), time_line
    view = lines[-1]
    tensorboard = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "tensorboard")
    logdir = os.path.dirname(os.path.abspath(out_dir))
    assert os.path.isabs(logdir) and view == f"view: {tensorboard} --logdir {logdir}", view
    return parts


DEMO_FEATURES = ["cart_position", "cart_velocity", "pole_angle", "pole_angular_velocity"]


def check_demo(stdout: str, stderr: str, out_dir: str) -> None:
    """What a CartPole demo (examples/cartpole.py, any --framework) run with an even
    ``--iterations`` (its last computation falls between images) printed and wrote:

    * no gymnasium warnings (Tune, given the string "PPO", imported every RLlib algorithm,
      and DreamerV3's module builds a debug CartPole with float64 bounds and observations);
    * the TensorBoard command: absolute tensorboard, --logdir the experiment dir;
    * images at the last training step (written when training was saved and stopped);
    * the next step, ``rllib-saliency explain <checkpoint>``, which runs on that checkpoint and
      names the features as training did.
    """
    import numpy as np
    from tb_events import load, scalars

    for warning in ("precision lowered", "not within the observation space"):
        assert warning not in stderr, stderr[-3000:]
    trial_dir = stdout.split("one run): ")[1].splitlines()[0].strip()
    lines = stdout.splitlines()
    ours = lines.index("View them with:")  # (Tune prints a hint of its own earlier, for driver_artifacts)
    command = next(line.strip() for line in lines[ours + 1 :] if "--logdir" in line)
    executable, _, logdir = command.partition(" --logdir ")
    assert os.path.isabs(executable) and os.path.exists(executable)
    assert logdir == os.path.dirname(trial_dir)  # one level up: the run has a name in TensorBoard

    events = load(trial_dir)
    prefix = "saliency/default_policy/action/gradient"
    last = max(scalars(events, f"{prefix}/mean_abs/pole_angle"))
    for kind in ("importance", "evolution"):
        assert last in [e.step for e in events.Images(f"{prefix}/{kind}")], kind

    checkpoint = next(line for line in lines if line.startswith("Checkpoint: "))[len("Checkpoint: ") :]
    explain = next(line.strip() for line in lines if " explain " in line and "rllib-saliency" in line)
    arguments = shlex.split(explain)
    assert os.path.isabs(arguments[0]) and arguments[1:3] == ["explain", checkpoint], explain
    out = arguments[arguments.index("--out") + 1]
    assert os.path.dirname(out) == logdir  # the CLI's run shows beside the trial in TensorBoard
    arguments[arguments.index("--out") + 1] = out = os.path.join(out_dir, "explain")
    result = subprocess.run(
        [*arguments, "--episodes", "1", "--quiet"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = np.load(os.path.join(out, "attributions_default_policy_action_gradient.npz"))
    assert list(data["feature_names"]) == DEMO_FEATURES  # read from the checkpoint


def replay(env_id: str, actions, episode_ids, encode=lambda o: o):
    """The observations of the recorded episodes replayed with the recorded actions (episode k
    reset with seed k, the CLI's default --seed 0); each episode must have been played to its end."""
    import gymnasium as gym
    import numpy as np

    env = gym.make(env_id)
    rows = []
    for k in np.unique(episode_ids):
        obs, _ = env.reset(seed=int(k))
        for action in actions[episode_ids == k]:
            rows.append(encode(obs))
            obs, _, terminated, truncated, _ = env.step(action)
        assert terminated or truncated  # whole episodes
    return np.asarray(rows, np.float32)


def run_parallel(
    starts: dict[str, Callable[[], subprocess.Popen]], parallel: int, limit: float = 300.0
) -> dict[str, subprocess.CompletedProcess]:
    """Start each process (``starts[name]()`` returns it, stdout and stderr piped), ``parallel`` at
    a time; one still running after ``limit`` seconds is killed. Their completed processes by name."""
    pending = list(starts.items())
    running: dict[str, tuple[subprocess.Popen, float]] = {}
    done: dict[str, subprocess.CompletedProcess] = {}
    while pending or running:
        while pending and len(running) < parallel:
            name, start = pending.pop(0)
            running[name] = (start(), time.monotonic())
        for name, (process, started) in list(running.items()):
            if process.poll() is None and time.monotonic() - started < limit:
                continue
            if process.poll() is None:
                process.kill()
            stdout, stderr = process.communicate()
            done[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
            del running[name]
        time.sleep(0.05)
    return done


def describe(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"


def start(args: list[str], pythonpath: str | None = None, command: list[str] = CLI) -> subprocess.Popen:
    """``command ARGS`` (the CLI through ``python -m`` unless told), stdout and stderr piped; with
    ``pythonpath`` put first on the child's PYTHONPATH."""
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, env.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [*command, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def run_all(jobs: dict[str, list[str] | dict], parallel: int = 2) -> dict[str, subprocess.CompletedProcess]:
    """Run CLI invocations, ``parallel`` at a time; their completed processes by name. A job is the
    CLI's arguments, or the keyword arguments of ``start`` (``args``, ``pythonpath``, ``command``)."""

    def starter(job: list[str] | dict) -> Callable[[], subprocess.Popen]:
        return functools.partial(start, **job) if isinstance(job, dict) else functools.partial(start, job)

    return run_parallel({name: starter(job) for name, job in jobs.items()}, parallel)


def run_commands(
    checkpoint: str, commands: dict[str, list[str]], out_dir: str, parallel: int = 2
) -> dict[str, subprocess.CompletedProcess]:
    """``rllib-saliency COMMAND CHECKPOINT ARGS --quiet --out out_dir/NAME`` for each
    ``{NAME: [COMMAND, *ARGS]}``, ``parallel`` at a time; their completed processes by name."""

    def start(name: str, command: list[str]) -> Callable[[], subprocess.Popen]:
        args = [sys.executable, "-m", "rllib_saliency.cli", command[0], checkpoint, *command[1:]]
        args += ["--quiet", "--out", os.path.join(out_dir, name)]
        return lambda: subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    return run_parallel({name: start(name, command) for name, command in commands.items()}, parallel, 600.0)


def assert_cli_error(argv: list[str], capsys, messages: list[str]) -> None:
    """``rllib-saliency ARGV`` run in this process through ``main()`` exits 1 with
    ``rllib-saliency COMMAND: error: ...`` naming each of ``messages``, and no traceback."""
    from rllib_saliency.cli import main

    assert main(argv) == 1
    error = capsys.readouterr().err
    assert f"rllib-saliency {argv[0]}: error: " in error, error
    for message in messages:
        assert message in error, error
    assert "Traceback" not in error
