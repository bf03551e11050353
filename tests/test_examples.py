"""The examples stay runnable (short runs, graph mode only: they take --framework for tf2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FRAMEWORK

pytestmark = [pytest.mark.slow, pytest.mark.skipif(FRAMEWORK != "tf", reason="run once")]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str, cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_explain_example(tmp_path):
    out = run_example("explain_cartpole.py", "--iterations", "1", cwd=tmp_path)
    assert "integrated_gradients" in out and "completeness error" in out
