"""The examples both stacks share stay runnable on this process's stack (short runs; the old stack
once, in the "tf" process). examples/multi_agent.py and the demo have their own contracts
(test_multi_agent_example.py, test_demo.py); the new-stack-only DQN and SAC examples are in
tests/new_stack/test_examples_new_stack.py."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FRAMEWORK
from example_runs import run_example
from PIL import Image

pytestmark = [pytest.mark.slow, pytest.mark.skipif(FRAMEWORK == "tf2", reason="old stack: run in 'tf'")]


def test_explain_example(tmp_path):
    chart = tmp_path / "value.png"
    arguments = ("--iterations", "1", "--framework", FRAMEWORK, "--plot", str(chart))
    out = run_example("explain_cartpole.py", *arguments, cwd=tmp_path)
    assert "integrated_gradients" in out and "completeness error" in out
    pixels = np.asarray(Image.open(chart).convert("L"))  # plot()'s chart, written by the example
    assert pixels.shape[1] > 300 and pixels.std() > 10
    for method in ("gradient", "gradient_x_input", "smoothgrad", "occlusion"):
        assert f"\n{method} " in out, out
