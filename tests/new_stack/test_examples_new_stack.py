"""The new-stack examples stay runnable (short runs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


def run_example(name: str, *args: str, cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_multi_agent_torch_example(tmp_path):
    out = run_example("multi_agent_torch.py", "--iterations", "1", cwd=tmp_path)
    assert "left: |d logit/d pole_angle|" in out and "right:" in out
