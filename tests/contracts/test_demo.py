"""The CartPole demo (``make demo`` is its torch run) on this process's stack: trains under Tune,
writes saliency beside RLlib's curves, prints the TensorBoard command and the next step, which
runs (tests/cli_output.py:check_demo). Old stack: once, in the "tf" process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cli_output import check_demo
from conftest import FRAMEWORK

pytestmark = [pytest.mark.slow, pytest.mark.skipif(FRAMEWORK == "tf2", reason="old stack: run in 'tf'")]

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


def test_cartpole_demo_prints_the_tensorboard_command_and_the_next_step(tmp_path):
    args = ["--iterations", "2", "--storage", str(tmp_path / "results"), "--framework", FRAMEWORK]
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "cartpole.py"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    trial_dir = result.stdout.split("one run): ")[1].splitlines()[0].strip()
    assert list(Path(trial_dir).glob("events.out.tfevents.*.saliency"))
    check_demo(result.stdout, result.stderr, str(tmp_path))
