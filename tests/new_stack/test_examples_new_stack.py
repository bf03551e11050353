"""The new-stack examples stay runnable (short runs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_output import check_demo

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


def run_example(name: str, *args: str, cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_cartpole_torch_demo_prints_the_tensorboard_command(tmp_path):
    args = ["--iterations", "2", "--storage", str(tmp_path / "results")]
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "cartpole.py"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    check_demo(out, result.stderr, str(tmp_path))
    trial_dir = out.split("one run): ")[1].splitlines()[0].strip()
    assert list(Path(trial_dir).glob("events.out.tfevents.*.saliency"))
    lines = out.splitlines()
    ours = lines.index("View them with:")  # (Tune prints a hint of its own earlier, for driver_artifacts)
    command = next(line.strip() for line in lines[ours + 1 :] if "--logdir" in line)
    executable, _, logdir = command.partition(" --logdir ")
    assert os.path.isabs(executable) and os.path.exists(executable)
    assert logdir == os.path.dirname(trial_dir)  # one level up: the run has a name in TensorBoard
    assert "Checkpoint: " in out


def test_multi_agent_torch_example(tmp_path):
    out = run_example("multi_agent_torch.py", "--iterations", "1", cwd=tmp_path)
    assert "left: |d logit/d pole_angle|" in out and "right:" in out
