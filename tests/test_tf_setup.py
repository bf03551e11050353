"""tf-keras setup: importing rllib_saliency first is enough, in the driver and in Ray workers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import FRAMEWORK, ppo_config


def run_python(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(FRAMEWORK != "tf", reason="framework-independent; run once")
def test_importing_first_selects_tf_keras_in_a_clean_process():
    result = run_python("import rllib_saliency, tensorflow as tf; print(tf.keras.__name__)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("tf_keras")


@pytest.mark.skipif(FRAMEWORK != "tf", reason="framework-independent; run once")
def test_importing_after_keras3_was_loaded_says_what_to_do():
    """Torch users are not stopped; a TF policy is refused with the fix when it is first seen."""
    result = run_python(
        "import tensorflow as tf; tf.keras.layers; import rllib_saliency\n"
        "from rllib_saliency.frameworks import ensure_legacy_keras\n"
        "ensure_legacy_keras()"
    )
    assert result.returncode != 0
    fix = "import rllib_saliency (or set the environment variable TF_USE_LEGACY_KERAS=1)"
    warning, _, traceback = result.stderr.partition("Traceback")
    assert fix in warning and "torch RLModules are unaffected" in warning
    assert "ImportError" in traceback and fix in traceback


@pytest.mark.skipif(FRAMEWORK != "tf", reason="framework-independent; run once")
def test_tensorflow_imported_but_keras_untouched_still_works():
    result = run_python("import tensorflow as tf; import rllib_saliency; print(tf.keras.__name__)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("tf_keras")


def test_remote_env_runner_inherits_the_setting(ray_cluster):
    """The suite imports rllib_saliency before ray.init(); a remote env runner must see tf-keras."""
    algo = ppo_config(num_env_runners=1).build_algo()
    try:
        algo.train()  # the remote runner built its TF policy and sampled with it

        def probe(worker):
            import tensorflow as tf

            return os.environ.get("TF_USE_LEGACY_KERAS"), tf.keras.__name__, os.getpid()

        results = algo.env_runner_group.foreach_env_runner(probe, local_env_runner=False)
        assert len(results) == 1
        flag, keras_name, pid = results[0]
        assert pid != os.getpid() and flag == "1" and keras_name.startswith("tf_keras")
    finally:
        algo.stop()
