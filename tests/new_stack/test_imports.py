"""What ``import rllib_saliency`` loads, and RLlib's new stack in an environment holding TensorFlow too.

The test environment holds TensorFlow and the default torch wheel (with triton):
plain RLlib new-stack PPO crashes there with a segmentation fault unless triton
loads before TensorFlow (README, Known issues). Importing rllib_saliency first
arranges that, in the driver and in Ray's worker processes.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

BOTH_INSTALLED = all(importlib.util.find_spec(m) for m in ("tensorflow", "torch", "triton"))


def run_python(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "RAY_RUNTIME_ENV_HOOK")}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)


def test_import_loads_no_framework():
    result = run_python(
        "import sys, rllib_saliency\n"
        "from rllib_saliency import explain, maximize_activation, trust\n"
        "heavy = ('tensorflow', 'torch', 'ray.rllib', 'triton', 'keras')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


TRAIN = """
import rllib_saliency
import ray
from ray.rllib.algorithms.ppo import PPOConfig
from rllib_saliency import SaliencyCallbacks
ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
for num_learners in (0, 1):
    config = (
        PPOConfig().environment("CartPole-v1").env_runners(num_env_runners=0)
        .learners(num_learners=num_learners)
        .training(train_batch_size=128, minibatch_size=64, num_epochs=1)
        .callbacks(SaliencyCallbacks.configure(
            methods=("gradient",), targets=("action", "value"), logdir={logdir!r} + str(num_learners)
        ))
    )
    algo = config.build_algo()
    result = algo.train()
    print(num_learners, "value", float(result["saliency"]["default_policy/value/gradient/mean_abs/f2"]))
    print(num_learners, "errors", result["saliency"].get("errors", 0))
    algo.stop()
"""


@pytest.mark.skipif(not BOTH_INSTALLED, reason="needs TensorFlow and torch with triton in one environment")
def test_new_stack_trains_with_tensorflow_installed(tmp_path):
    """num_learners=0: the learner's optimizer (which loads triton) runs in the driver;
    num_learners=1: in a Ray worker, which gets the import order through the worker set-up hook.
    The value target also shows the remote learner's module explained the samples. (Both in one
    process, one after the other: a process start each would only add time.)"""
    result = run_python(TRAIN.format(logdir=str(tmp_path / "logs")))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.rsplit(" ", 1) for line in result.stdout.splitlines() if line[:2] in ("0 ", "1 "))
    for num_learners in (0, 1):
        assert float(lines[f"{num_learners} value"]) > 0, result.stdout
        assert lines[f"{num_learners} errors"] == "0", result.stdout
