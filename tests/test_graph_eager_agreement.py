"""Graph ("tf") and eager ("tf2") backends agree on the same weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FRAMEWORK, rollout_observations
from eager_replay import CASES

from rllib_saliency import explain


@pytest.mark.skipif(FRAMEWORK != "tf", reason="the graph-mode run drives the eager one in a subprocess")
@pytest.mark.parametrize("env", ["CartPole-v1", "Pendulum-v1"])
def test_graph_and_eager_agree_on_the_same_weights(trained, env, tmp_path: Path):
    algo = trained(env)
    policy = algo.get_policy()
    obs = rollout_observations(algo, n=32)
    weights = policy.get_session().run(policy.model.variables())
    np.savez(tmp_path / "in.npz", obs=obs, **{f"w{i}": w for i, w in enumerate(weights)})
    script = Path(__file__).with_name("eager_replay.py")
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "in.npz"), str(tmp_path / "out.npz"), env],
        cwd=script.parent,
        env={**os.environ, "PYTHONPATH": str(script.parent)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    eager = np.load(tmp_path / "out.npz")
    for method, target in CASES:
        graph = explain(policy, obs, method, target)
        assert np.abs(graph.values).max() > 1e-4
        np.testing.assert_allclose(eager[f"{method}/{target}"], graph.values, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(eager[f"{method}/{target}/target"], graph.target_values, atol=1e-5)
