"""The ``rllib-saliency`` contracts both stacks keep, run on the stack of this pytest process
(the stack-only ones: tests/test_cli.py, tests/new_stack/test_cli_new_stack.py).

One small PPO on CartPole, trained one iteration with SaliencyCallbacks naming its features, is
saved the stack's way; the CLI runs on it as subprocesses (real exit codes, started together by
one module fixture) and what they wrote is checked against ``explain()`` /
``maximize_activation()`` on the model that was saved.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from cli_output import (
    CONSOLE_SCRIPT,
    DEMO_FEATURES,
    assert_cli_error,
    check_time_and_view,
    describe,
    replay,
    run_all,
)
from conftest import STACK
from PIL import Image
from tb_events import decode_png, load, scalars

from rllib_saliency import SaliencyCallbacks, explain, maximize_activation

pytestmark = pytest.mark.slow

FEATURES = DEMO_FEATURES  # CartPole's, named in training: the CLI reads them from the checkpoint

# What differs between the stacks' CLI runs, in one place.
EXPECTED = {
    "old": {
        "model": "policy",  # what the summary line says is explained
        # An algorithm checkpoint's episodes are its env runner's (RLlib's episode ids, its seeding).
        "seeded episodes": False,
        "unknown policy": ["policy 'pol_9' is not in", "available policies: 'default_policy'"],
        # explain()'s tolerances: attributions, target values, the mean |attribution| scalars.
        "tolerance": ({"rtol": 1e-5, "atol": 1e-7}, {"atol": 1e-6}, {"rtol": 1e-5}),
    },
    "new": {
        "model": "module",
        # The CLI plays the episodes: episode k reset with seed k (--seed 0), its id k.
        "seeded episodes": True,
        "unknown policy": ["--policy 'pol_9'", "available module ids: 'default_policy'"],
        "tolerance": ({"rtol": 1e-5, "atol": 1e-6},) * 2 + ({"rtol": 1e-4, "atol": 1e-7},),
    },
}[STACK.name]


@pytest.fixture(scope="module")
def cli(ray_cluster, tmp_path_factory):
    """The checkpoint, the files the commands read, and every CLI run on them."""
    root = tmp_path_factory.mktemp("cli_contracts")
    config = STACK.config().training(train_batch_size=128, minibatch_size=64)
    config = config.callbacks(
        SaliencyCallbacks.configure(
            every=1,
            methods=("gradient",),
            targets=("action",),
            feature_names=FEATURES,
            logdir=str(root / "training"),
        )
    )
    algo = config.build_algo()
    result = algo.train()
    checkpoint = STACK.save(algo, str(root / "algorithm"))
    obs = np.random.default_rng(3).normal(0.0, 0.5, (40, 4)).astype(np.float32)
    np.save(root / "obs.npy", obs)
    # Not checkpoints, or not complete ones.
    not_a_checkpoint = root / "not_a_checkpoint"
    not_a_checkpoint.mkdir()
    (not_a_checkpoint / "notes.txt").write_text("hello")
    # The top-level files RLlib's new API stack writes (Checkpointable.save_to_path; metadata says
    # version 2.1), without the learner's modules.
    new_stack = root / "new_stack_algorithm"
    (new_stack / "learner_group").mkdir(parents=True)
    (new_stack / "env_runner").mkdir()
    (new_stack / "rllib_checkpoint.json").write_text(
        '{"class_and_ctor_args_file": "class_and_ctor_args.pkl", "state_file": "state", '
        f'"ray_version": "{__import__("ray").__version__}", "checkpoint_version": "2.1"}}'
    )
    (new_stack / "class_and_ctor_args.pkl").write_bytes(b"")
    (new_stack / "algorithm_state.pkl").write_bytes(b"")
    # Fewer still: a learner_group/ and the constructor's file.
    incomplete = root / "incomplete"
    (incomplete / "learner_group").mkdir(parents=True)
    (incomplete / "class_and_ctor_args.pkl").write_bytes(b"")

    out = root / "out"
    jobs = {
        "explain": [
            "explain", checkpoint, "--episodes", "2", "--method", "gradient", "--target", "action",
            "--out", str(out / "explain"),
        ],
        "maximize": [
            "maximize", checkpoint, "--obs", str(root / "obs.npy"), "--target", "action_1",
            "--steps", "40", "--n-starts", "4", "--out", str(out / "maximize"), "--step", "7",
        ],
        # One documented error end to end (real exit code, no traceback), via the console script.
        "unknown_policy": {
            "args": ["explain", checkpoint, "--policy", "pol_9", "--out", str(out / "x")],
            "command": [CONSOLE_SCRIPT],
        },
    }  # fmt: skip
    results = run_all(jobs, parallel=3)
    yield {
        "root": root,
        "paths": {
            "root": str(root),
            "algorithm": checkpoint,
            "not_a_checkpoint": str(not_a_checkpoint),
            "new_stack": str(new_stack),
            "incomplete": str(incomplete),
        },
        "results": results,
        "out": out,
        "obs": obs,
        "model": STACK.model(algo),
        "step": STACK.sampled_steps(algo, result),  # the CLI's default TensorBoard step
    }
    algo.stop()


def test_explain_algorithm_checkpoint_writes_events_pngs_and_npz(cli):
    result = cli["results"]["explain"]
    assert result.returncode == 0, describe(result)
    directory = cli["out"] / "explain"
    npz_path = directory / "attributions_default_policy_action_gradient.npz"
    png_path = directory / "importance_default_policy_action_gradient.png"
    assert len(list(directory.glob("events.out.tfevents.*"))) == 1
    # Summary: what was explained, files written, time, per-observation cost; progress on stderr.
    assert f"{EXPECTED['model']} 'default_policy'" in result.stdout, result.stdout
    assert str(npz_path) in result.stdout and str(png_path) in result.stdout
    assert "time:" in result.stdout and "per observation" in result.stdout
    assert "rollout" in result.stderr and "episode" in result.stderr and "Traceback" not in result.stderr
    # Every phase is named (Python's start-up included) and they add up to the total. No stack
    # starts a Ray instance: an old-stack algorithm's env runner is built in the command's process.
    phases = ["start-up", "RLlib import", "checkpoint", "load", "rollout", "attribution", "writing"]
    parts = check_time_and_view(result.stdout, str(directory), phases)
    assert "Ray start" not in parts and "Ray stop" not in parts, parts

    data = np.load(npz_path)
    # The feature names training was configured with, read from the checkpoint.
    assert list(data["feature_names"]) == FEATURES
    obs, actions, values = data["observations"], data["actions"], data["attributions"]
    episode_ids = data["episode_ids"]
    assert obs.shape[1:] == (4,) and len(obs) == len(actions) == len(values) > 2
    assert len(np.unique(episode_ids)) == 2
    model = cli["model"]
    # Greedy rollouts: every action is the model's greedy one.
    np.testing.assert_array_equal(actions, STACK.greedy(model, obs))
    if EXPECTED["seeded episodes"]:
        # The seeded episodes, replayed: the env's own observations (CartPole's default
        # connectors pass them through).
        assert sorted(np.unique(episode_ids)) == [0, 1]
        np.testing.assert_allclose(obs, replay("CartPole-v1", actions, episode_ids), atol=1e-6)
    reference = explain(model, obs, "gradient", "action")
    values_tolerance, target_tolerance, scalar_tolerance = EXPECTED["tolerance"]
    np.testing.assert_allclose(values, reference.values, **values_tolerance)
    np.testing.assert_allclose(data["target_values"], reference.target_values, **target_tolerance)
    assert str(data["method"]) == "gradient" and str(data["target"]) == "action"
    assert int(data["step"]) == cli["step"]

    with Image.open(png_path) as image:
        assert image.format == "PNG" and image.size[0] > 100
    events = load(str(directory))
    prefix = "saliency/default_policy/action/gradient"
    mean_abs = np.abs(reference.values).mean(axis=0)
    for feature, name in enumerate(FEATURES):
        series = scalars(events, f"{prefix}/mean_abs/{name}")
        assert list(series) == [cli["step"]]
        np.testing.assert_allclose(series[cli["step"]], mean_abs[feature], **scalar_tolerance)
    assert events.Histograms(f"{prefix}/distribution")[0].histogram_value.num == pytest.approx(values.size)
    assert decode_png(events.Images(f"{prefix}/importance")[0]).shape[2] == 3


def test_maximize_from_an_obs_file(cli):
    result = cli["results"]["maximize"]
    assert result.returncode == 0, describe(result)
    directory = cli["out"] / "maximize"
    data = np.load(directory / "actmax_default_policy_action_1.npz")
    reference = maximize_activation(cli["model"], "action_1", obs=cli["obs"], steps=40, n_starts=4, seed=0)
    np.testing.assert_allclose(data["starts"], reference.starts)
    np.testing.assert_allclose(data["target_values"], reference.target_values, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(data["inputs"], reference.inputs, rtol=1e-4, atol=1e-5)
    assert data["target_values"][-1].mean() > data["target_values"][0].mean()
    assert np.all(data["inputs"] >= data["low"]) and np.all(data["inputs"] <= data["high"])
    np.testing.assert_array_equal(data["observations"], cli["obs"])
    with Image.open(directory / "actmax_default_policy_action_1.png") as image:
        assert image.format == "PNG"
    events = load(str(directory))
    value = scalars(events, "saliency/default_policy/actmax/action_1/value")
    assert list(value) == [7]
    np.testing.assert_allclose(value[7], data["target_values"][-1].mean(), rtol=1e-5)
    assert "maximize" in result.stderr and "step" in result.stderr
    assert "at the starting points ->" in result.stdout


def test_an_error_end_to_end_exits_1_without_traceback(cli):
    result = cli["results"]["unknown_policy"]
    assert result.returncode == 1, describe(result)
    first, *rest = EXPECTED["unknown policy"]
    assert f"rllib-saliency explain: error: {first}" in result.stderr, describe(result)
    assert all(message in result.stderr for message in rest) and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("arguments", "messages"),
    [
        (["explain", "{root}/does_not_exist"], ["does_not_exist' does not exist", "algo.save"]),
        (["explain", "{not_a_checkpoint}"], ["is not an RLlib checkpoint directory", "export_checkpoint"]),
        (["explain", "{root}/obs.npy"], ["obs.npy' is not an RLlib checkpoint directory"]),
        (["maximize", "{algorithm}", "--policy", "pol_9", "--target", "value"], EXPECTED["unknown policy"]),
        # New-API-stack checkpoints without the learner's modules: RLlib's top-level files only, or fewer.
        (["explain", "{new_stack}"], ["new-API-stack algorithm checkpoint but lacks", "incomplete"]),
        (["explain", "{incomplete}"], ["lacks learner_group/learner/rl_module", "incomplete"]),
        (
            ["explain", "{algorithm}", "--import", "no_such_module_xyz"],
            ["--import no_such_module_xyz: no module named", "PYTHONPATH"],
        ),
        (["explain", "{algorithm}", "--target", "action_9"], ["target 'action_9' is out of range"]),
        (["maximize", "{algorithm}", "--target", "action_7"], ["target 'action_7' is out of range"]),
        (
            ["explain", "{algorithm}", "--method", "integrated_gradients", "--method-option", "stepz=3"],
            ["unknown option(s) stepz; valid options: baseline, steps"],
        ),
        (["maximize", "{algorithm}", "--target", "value", "--tv", "0.1"], ["--tv (total variation) applies"]),
        (["maximize", "{algorithm}", "--target", "value", "--steps", "0"], ["--steps must be a positive"]),
    ],
)
def test_documented_errors_exit_1_with_a_message(cli, capsys, arguments, messages):
    """Errors found before a model is loaded, checked in this process through main()."""

    argv = [a.format(**cli["paths"]) for a in arguments] + ["--out", str(cli["root"] / "unused")]
    assert_cli_error(argv, capsys, messages)


def test_help_of_the_console_script_and_each_command(capsys):
    from rllib_saliency.cli import main

    # (The console script itself ran in test_an_error_end_to_end_exits_1_without_traceback.)
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "explain" in text and "maximize" in text
    for command, options in (
        ("explain", ["--policy", "--episodes", "--obs", "--method", "--target", "--out", "--import"]),
        ("maximize", ["--target", "--init", "--steps", "--lr", "--l2", "--tv", "--n-starts", "--import"]),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        for option in options:
            assert option in text, (option, text)
        assert "custom environments, models and callbacks registered or defined there are found" in text


def test_feature_names_from_the_training_callbacks_settings(cli):
    """A checkpoint keeps SaliencyCallbacks' settings in its config; the CLI names features from
    them (--feature-names overrides; names that do not fit are ignored)."""
    from rllib_saliency.cli.common import feature_names_arg
    from rllib_saliency.stacks import inspect_checkpoint

    assert inspect_checkpoint(cli["paths"]["algorithm"], None).feature_names == FEATURES
    layout = ["f0", "f1", "f2"]
    names = ["sign", "noise_a", "noise_b"]
    assert feature_names_arg(None, layout, 3, names) == names
    assert feature_names_arg("x,y,z", layout, 3, names) == ["x", "y", "z"]
    assert feature_names_arg(None, ["f0", "f1"], 2, names) == ["f0", "f1"]


def test_feature_names_per_policy_and_among_several_callbacks():
    from rllib_saliency.stacks.checkpoint import saved_feature_names

    per_policy = SaliencyCallbacks.configure(every=1, feature_names={"p1": ["a", "b"]})
    # The new stack takes a list of callback classes; the old stack's policy config says "callbacks".
    assert saved_feature_names({"callbacks_class": [object, per_policy]}, "p1") == ["a", "b"]
    assert saved_feature_names({"callbacks": per_policy}, "p2") is None
    assert saved_feature_names({"callbacks_class": SaliencyCallbacks}, "p1") is None
    assert saved_feature_names({}, "p1") is None


def test_actmax_pictures_decode():
    from rllib_saliency.render import activation_chart, activation_images

    low, high = np.zeros((5, 5, 2)), np.ones((5, 5, 2))
    for png, height, width in (
        activation_chart(np.arange(3.0), np.zeros(3), -np.ones(3), np.ones(3), ["a", "b", "c"], "chart"),
        activation_images(np.full((5, 5, 2), 0.7), np.full((5, 5, 2), 0.2), low, high, "images"),
    ):
        with Image.open(io.BytesIO(png)) as image:
            assert image.format == "PNG" and image.size == (width, height)
