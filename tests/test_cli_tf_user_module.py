"""The CLI on a checkpoint whose custom model lives in a user's module that imports TensorFlow first.

This is how a ``TFModelV2`` is usually written (``import tensorflow as tf`` at the top, then
``ModelCatalog.register_custom_model``), and it matters: RLlib puts TensorFlow in graph mode
only when it is the one that imports it, so ``--import mymodels`` used to leave a "tf"
checkpoint's process eager, and every path that restores the policy outside an algorithm
(``--obs``, a policy checkpoint, ``maximize`` without a rollout, ``movie``) crashed in
``Policy.from_state``. Nothing here runs in the pytest process's TensorFlow mode: the
checkpoint is trained in a fresh subprocess, and each command runs in its own.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from cli_output import describe, run_parallel
from conftest import FRAMEWORK

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "rllib_saliency.cli"]
PARALLEL = 3  # CLI processes at once (each mostly waits on imports and Ray start-up)
MODULE = "rllib_saliency_tf_first_models"
# A user's model module: TensorFlow is its first import, before anything from RLlib.
MODULE_SOURCE = textwrap.dedent(
    '''
    import tensorflow as tf
    from ray.rllib.models import ModelCatalog
    from ray.rllib.models.tf.tf_modelv2 import TFModelV2

    MODEL = "rllib_saliency_tf_first_model"


    class TanhModel(TFModelV2):
        def __init__(self, obs_space, action_space, num_outputs, model_config, name):
            super().__init__(obs_space, action_space, num_outputs, model_config, name)
            inputs = tf.keras.layers.Input(shape=obs_space.shape, name="observations")
            hidden = tf.keras.layers.Dense(16, activation="tanh", name="hidden")(inputs)
            logits = tf.keras.layers.Dense(num_outputs, name="logits")(hidden)
            value = tf.keras.layers.Dense(1, name="value")(hidden)
            self.base_model = tf.keras.Model(inputs, [logits, value])

        def forward(self, input_dict, state, seq_lens):
            logits, self._value = self.base_model(input_dict["obs_flat"])
            return logits, state

        def value_function(self):
            return tf.reshape(self._value, [-1])


    ModelCatalog.register_custom_model(MODEL, TanhModel)
    '''
)
# A module that lets RLlib set graph mode, then makes a graph tensor when imported: a "tf2"
# checkpoint cannot switch to eager any more, which must be one line, not a traceback.
GRAPH_MODULE = "rllib_saliency_graph_at_import"
GRAPH_SOURCE = textwrap.dedent(
    f"""
    from ray.rllib.models import ModelCatalog  # noqa: F401 - RLlib imports TensorFlow: graph mode
    import tensorflow as tf
    import {MODULE}  # noqa: F401

    SCALE = tf.constant(1.0)
    """
)
# Trained as a user does, in a fresh process: rllib_saliency first, then their module.
TRAIN_SOURCE = textwrap.dedent(
    f"""
    import sys

    import rllib_saliency
    import {MODULE}
    import numpy as np
    from ray.rllib.algorithms.ppo import PPOConfig

    framework, root = sys.argv[1], sys.argv[2]
    algo = (
        PPOConfig()
        .api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)
        .environment("CartPole-v1")
        .framework(framework)
        .env_runners(num_env_runners=0, rollout_fragment_length="auto")
        .training(train_batch_size=64, minibatch_size=32, num_epochs=1,
                  model={{"custom_model": {MODULE}.MODEL}})
        .debugging(seed=0)
        .build_algo()
    )
    algo.train()
    algo.save(root + "/algorithm")
    policy = algo.get_policy()
    policy.export_checkpoint(root + "/policy")
    obs = np.random.default_rng(0).uniform(-1, 1, (16, 4)).astype(np.float32)
    np.save(root + "/obs.npy", obs)
    # The trained policy's own maps and logits, for the CLI's results to match.
    reference = rllib_saliency.explain(policy, obs, "gradient", "action")
    _, _, extra = policy.compute_actions(obs, explore=False)
    np.savez(root + "/reference.npz", attributions=reference.values,
             target_values=reference.target_values, logits=extra["action_dist_inputs"])
    algo.stop()
    """
)


def run_all(jobs: dict[str, list[str]], env: dict[str, str]) -> dict[str, subprocess.CompletedProcess]:
    """Run CLI invocations, ``PARALLEL`` at a time; returns their completed processes by name."""

    def start(args: list[str]) -> subprocess.Popen:
        pipe = subprocess.PIPE
        return subprocess.Popen([*CLI, *args], stdout=pipe, stderr=pipe, text=True, env=env)

    return run_parallel({name: functools.partial(start, args) for name, args in jobs.items()}, PARALLEL)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tf_first")
    module_dir = root / "user_code"
    module_dir.mkdir()
    (module_dir / f"{MODULE}.py").write_text(MODULE_SOURCE)
    (module_dir / f"{GRAPH_MODULE}.py").write_text(GRAPH_SOURCE)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(module_dir), env.get("PYTHONPATH")) if p)
    trained = subprocess.run(
        [sys.executable, "-c", TRAIN_SOURCE, FRAMEWORK, str(root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert trained.returncode == 0, describe(trained)
    algorithm, policy, obs, out = root / "algorithm", root / "policy", root / "obs.npy", root / "out"
    imports = ["--import", MODULE, "--quiet"]
    jobs = {
        # Restored outside an algorithm (Policy.from_state): the paths that crashed on "tf".
        "explain_obs": ["explain", str(algorithm), "--obs", str(obs), "--out", str(out / "obs"), *imports],
        "explain_policy_episodes": [
            "explain", str(policy), "--episodes", "1", "--out", str(out / "policy_episodes"), *imports
        ],  # fmt: skip
        "maximize": [
            "maximize", str(algorithm), "--target", "action_0", "--init", "random", "--episodes", "0",
            "--steps", "10", "--n-starts", "2", "--out", str(out / "maximize"), *imports,
        ],  # fmt: skip
        "movie": [
            "movie", str(algorithm), "--episodes", "1", "--max-steps", "8", "--out", str(out / "movie"),
            *imports,
        ],  # fmt: skip
        # Built as an algorithm (its own graph): worked before, kept working.
        "explain_episodes": [
            "explain", str(algorithm), "--episodes", "2", "--out", str(out / "episodes"), *imports
        ],  # fmt: skip
        # Errors of this set-up: one line each.
        "without_import": ["explain", str(algorithm), "--obs", str(obs), "--out", str(out / "x1")],
    }
    if FRAMEWORK == "tf2":
        jobs["graph_at_import"] = [
            "explain", str(algorithm), "--obs", str(obs), "--out", str(out / "x2"),
            "--import", GRAPH_MODULE, "--quiet",
        ]  # fmt: skip
    return {"results": run_all(jobs, env), "out": out, "root": root}


@pytest.mark.parametrize(
    ("name", "files"),
    [
        ("explain_obs", ["attributions_default_policy_action_gradient.npz"]),
        ("explain_policy_episodes", ["attributions_default_policy_action_gradient.npz"]),
        ("explain_episodes", ["attributions_default_policy_action_gradient.npz"]),
        ("maximize", ["actmax_default_policy_action_0.npz", "actmax_default_policy_action_0.png"]),
        ("movie", ["episode_0.gif", "episode_0.html", "episode_0.npz"]),
    ],
)
def test_every_command_runs_with_a_module_that_imports_tensorflow_first(runs, name, files):
    result = runs["results"][name]
    assert result.returncode == 0, describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    directory = runs["out"] / name.replace("explain_", "")
    for file in files:
        assert (directory / file).is_file(), (file, sorted(os.listdir(directory)))


def test_the_maps_are_the_trained_policys(runs):
    """Restored in the CLI's process, the policy gives the maps and logits it gave in training."""
    reference = np.load(runs["root"] / "reference.npz")
    data = np.load(runs["out"] / "obs" / "attributions_default_policy_action_gradient.npz")
    np.testing.assert_allclose(data["observations"], np.load(runs["root"] / "obs.npy"))
    np.testing.assert_allclose(data["attributions"], reference["attributions"], atol=1e-5)
    np.testing.assert_allclose(data["target_values"], reference["target_values"], atol=1e-5)
    # The "action" target is the greedy action's logit: the policy's own output.
    logits = reference["logits"]
    taken = logits[np.arange(len(logits)), data["actions"]]
    np.testing.assert_allclose(data["target_values"], taken, atol=1e-5)


def test_errors_of_this_setup_are_one_line(runs):
    expected = {
        "without_import": ["custom model 'rllib_saliency_tf_first_model'", "--import MODULE"],
        "graph_at_import": ["framework 'tf2'", "already used in graph mode", "--import modules"],
    }
    for name, messages in expected.items():
        if name not in runs["results"]:
            continue  # graph_at_import: a "tf2" checkpoint only
        result = runs["results"][name]
        assert result.returncode == 1, describe(result)
        assert "Traceback" not in result.stderr, describe(result)
        lines = result.stderr.splitlines()
        errors = [line for line in lines if "error: " in line and "rllib-saliency" in line]
        assert len(errors) == 1 and errors[0].startswith("rllib-saliency explain: error: "), describe(result)
        for message in messages:
            assert message in errors[0], describe(result)
