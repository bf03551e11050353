"""examples/multi_agent.py stays runnable on this process's stack (a short run): two models, each
explained under its own tags, beside a user's own callbacks. Old stack: once, in the "tf" process
(it was a twin pair, examples/multi_agent.py and examples/multi_agent_torch.py, with a test each)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FRAMEWORK

pytestmark = [pytest.mark.slow, pytest.mark.skipif(FRAMEWORK == "tf2", reason="old stack: run in 'tf'")]

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


def test_multi_agent_example(tmp_path):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "multi_agent.py"), "--iterations", "1", "--framework", FRAMEWORK],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "left: |d logit/d pole_angle|" in result.stdout and "right:" in result.stdout
    assert "TensorBoard logs: " in result.stdout
