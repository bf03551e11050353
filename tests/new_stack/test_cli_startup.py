"""``rllib-saliency explain`` on a new-API-stack (torch) checkpoint imports no TensorFlow (issue 20).

RLlib imports TensorFlow whenever it is installed, and TensorBoard's event writer does too; on this
command's path that was most of its start-up (7-22 s of "RLlib import"). The command runs in a
subprocess here, as a user runs it, and reports the modules it imported.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from conftest import new_ppo_config

# The command as `rllib-saliency explain ...` runs it, then the frameworks it imported.
RUN = """
import json, sys
from rllib_saliency.cli.main import main
code = main(sys.argv[1:])
print("IMPORTED " + json.dumps({name: name in sys.modules for name in ("tensorflow", "torch")}))
sys.exit(code)
"""


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="TensorFlow is not installed")
def test_a_torch_checkpoint_is_explained_without_importing_tensorflow(ray_cluster, tmp_path):
    algo = new_ppo_config("CartPole-v1").build_algo()
    algo.train()
    checkpoint = str(tmp_path / "checkpoint")
    algo.save_to_path(checkpoint)
    algo.stop()
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-c", RUN, "explain", checkpoint, "--episodes", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    imported = json.loads(result.stdout.split("IMPORTED ", 1)[1].splitlines()[0])
    assert imported == {"tensorflow": False, "torch": True}
    assert "Not importing TensorFlow" not in result.stderr  # RLlib's warning is not shown
    # The outputs are all there, TensorBoard's event file included (written without TensorFlow).
    names = sorted(path.name for path in out.iterdir())
    assert any(name.startswith("events.out.tfevents") for name in names), names
    assert any(name.endswith(".npz") for name in names), names
    assert "time: " in result.stdout and "RLlib import" in result.stdout
