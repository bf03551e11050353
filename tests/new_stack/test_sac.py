"""SAC (RLlib's ``DefaultSACTorchRLModule``) on the new API stack: a short real training on Pendulum
with the callback, every target against finite differences of the module's own outputs on a
float64 copy (the policy's Gaussian means, its squashed-Gaussian log-probability, and the twin
Q-networks' minimum at an action held fixed), and the CLI on the checkpoint."""

from __future__ import annotations

import copy
import logging
import os

import numpy as np
import pytest
import torch
from analytic import central_differences
from cli_output import describe, run_commands
from ray.rllib.core.columns import Columns
from tb_events import load, scalars, text

import rllib_saliency  # noqa: F401  (first: a safe TF/torch import order for RLlib's new stack)
from rllib_saliency import SaliencyCallbacks, explain, learner_module
from rllib_saliency.errors import UnsupportedTarget

pytestmark = pytest.mark.slow

METHODS = ("gradient", "integrated_gradients")
TARGETS = ("action_0", "value", "logp")


def pendulum_obs(n: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    angle = rng.uniform(-np.pi, np.pi, n)
    return np.stack([np.cos(angle), np.sin(angle), rng.uniform(-3, 3, n)], axis=1).astype(np.float32)


@pytest.fixture(scope="module")
def sac(ray_cluster, tmp_path_factory):
    """SAC on Pendulum, two short iterations (rollout_fragment_length=50: RLlib's default of 1 makes
    an iteration take minutes) with the callback on action, value and logp; and a checkpoint."""
    from ray.rllib.algorithms.sac import SACConfig

    logdir = str(tmp_path_factory.mktemp("sac_logs"))
    config = (
        SACConfig()
        .environment("Pendulum-v1")
        .env_runners(num_env_runners=0, rollout_fragment_length=50)
        .training(num_steps_sampled_before_learning_starts=50, train_batch_size_per_learner=32)
        .reporting(min_sample_timesteps_per_iteration=100)
        .callbacks(
            SaliencyCallbacks.configure(
                every=1,
                targets=("action", "value", "logp"),
                logdir=logdir,
                trust_metrics=("completeness", "deletion", "agreement", "randomization"),
            )
        )
        .debugging(seed=0)
    )
    algo = config.build_algo()
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("rllib_saliency")
    logger.addHandler(handler)
    try:
        results = [algo.train() for _ in range(2)]
    finally:
        logger.removeHandler(handler)
    errors = [r.getMessage() for r in records if r.levelno >= logging.ERROR]
    checkpoint = algo.save_to_path(str(tmp_path_factory.mktemp("sac") / "checkpoint"))
    yield algo, results, errors, logdir, checkpoint
    algo.stop()


def test_callback_logs_action_value_logp_without_errors(sac):
    algo, results, errors, logdir, _ = sac
    assert errors == []
    events = load(logdir, algo)
    steps = [r["training_iteration"] for r in results]
    for target in TARGETS:
        prefix = f"saliency/default_policy/{target}"
        trust = [f"{prefix}/integrated_gradients/trust/completeness_error"]
        trust += [f"{prefix}/agreement/gradient__integrated_gradients"]
        metrics = ("deletion_auc", "randomization_rank_corr")
        trust += [f"{prefix}/{m}/trust/{k}" for m in METHODS for k in metrics]
        for tag in trust:
            assert sorted(scalars(events, tag)) == steps, tag
        # Integrated Gradients adds up to f(x) - f(baseline): the held action keeps value one smooth
        # function of the observation along the path.
        completeness = scalars(events, f"{prefix}/integrated_gradients/trust/completeness_error")
        assert max(completeness.values()) < 0.05, (target, completeness)
        for method in METHODS:
            for feature in range(3):
                tag = f"saliency/default_policy/{target}/{method}/mean_abs/f{feature}"
                logged = scalars(events, tag)
                assert sorted(logged) == steps, tag
                key = f"default_policy/{target}/{method}/mean_abs/f{feature}"
                assert logged[steps[-1]] == pytest.approx(float(results[-1]["saliency"][key]), rel=1e-6)
    for result in results:
        assert "errors" not in result["saliency"], result["saliency"].get("errors")
    config = text(events, "saliency/config")  # what each chart's number is, for SAC's module
    assert "- default_policy: action_0 = the Gaussian mean of action dimension 0, before squashing" in config
    assert "- default_policy: value = min(Q1, Q2) at the squashed greedy action, held fixed" in config


def test_targets_match_finite_differences_of_the_module(sac):
    algo = sac[0]
    module = learner_module(algo)
    assert type(module).__name__ == "DefaultSACTorchRLModule" and module.twin_q
    replica = copy.deepcopy(module).double().eval()
    obs = pendulum_obs()

    def dist_inputs(x: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return replica._forward_inference({Columns.OBS: torch.as_tensor(x)})[Columns.ACTION_DIST_INPUTS]

    def q(x: np.ndarray, actions: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            batch = {Columns.OBS: torch.as_tensor(x), Columns.ACTIONS: torch.as_tensor(actions)}
            twins = [
                replica._qf_forward_train_helper(batch, replica.qf_encoder, replica.qf),
                replica._qf_forward_train_helper(batch, replica.qf_twin_encoder, replica.qf_twin),
            ]
            return torch.minimum(*twins).numpy()

    x = obs.astype(np.float64)
    mean = dist_inputs(x)[:, :1].numpy()
    greedy = np.tanh(mean)  # the squashed mean (Pendulum: RLlib's squashing to [-1, 1])
    dist_cls = replica.get_inference_action_dist_cls()

    def logp(z: np.ndarray) -> np.ndarray:
        return dist_cls.from_logits(dist_inputs(z)).logp(torch.as_tensor(greedy)).numpy()

    expected = {
        "action_0": lambda z: dist_inputs(z)[:, 0].numpy(),  # the Gaussian mean before squashing
        "logp": logp,  # of the greedy action, held fixed
        "value": lambda z: q(z, greedy),  # min(Q1, Q2) at the greedy action, held fixed
    }
    for target, f in expected.items():
        attribution = explain(algo, obs, "gradient", target)
        np.testing.assert_allclose(attribution.target_values, f(x), rtol=1e-4, atol=1e-5, err_msg=target)
        fd = central_differences(f, obs)
        scale = np.abs(fd).max()
        assert scale > 1e-3, target
        np.testing.assert_allclose(attribution.values, fd, rtol=1e-3, atol=1e-4 * scale, err_msg=target)
        if target != "action_0":  # the action both are evaluated at: the squashed mean at x
            np.testing.assert_allclose(attribution.resolved.actions, greedy, rtol=1e-5, atol=1e-6)
    # The action is held fixed: the gradient is not the total derivative through the policy.
    through_policy = central_differences(lambda z: q(z, np.tanh(dist_inputs(z)[:, :1].numpy())), obs)
    held = explain(algo, obs, "gradient", "value").values
    assert not np.allclose(held, through_policy, rtol=1e-2, atol=1e-3)
    with pytest.raises(UnsupportedTarget, match=r"target 'advantage'.*DefaultSACTorchRLModule.*no advantage"):
        explain(algo, obs, target="advantage")
    # Given actions are used as they are.
    given = np.linspace(-0.9, 0.9, len(obs))[:, None].astype(np.float32)
    attribution = explain(algo, obs, "gradient", "value", actions=given)
    at_given = q(x, given.astype(np.float64))
    np.testing.assert_allclose(attribution.target_values, at_given, rtol=1e-4, atol=1e-5)
    fd = central_differences(lambda z: q(z, given.astype(np.float64)), obs)
    np.testing.assert_allclose(attribution.values, fd, rtol=1e-3, atol=1e-4 * np.abs(fd).max())


def test_cli_explains_and_films_a_sac_checkpoint(sac, tmp_path):
    from ray.rllib.core.rl_module.rl_module import RLModule

    checkpoint = sac[4]
    restored = RLModule.from_checkpoint(
        os.path.join(checkpoint, "learner_group", "learner", "rl_module", "default_policy")
    )
    commands = {
        "value": ["explain", "--episodes", "1", "--target", "value"],
        "movie": ["movie", "--episodes", "1", "--max-steps", "60"],
        "maximize": ["maximize", "--target", "value", "--steps", "20"],
    }
    for run in run_commands(checkpoint, commands, str(tmp_path)).values():
        assert run.returncode == 0, describe(run)
    saved = np.load(tmp_path / "value" / "attributions_default_policy_value_gradient.npz")
    assert len(saved["observations"]) == 200  # one Pendulum episode
    expected = explain(restored, saved["observations"], "gradient", "value")
    np.testing.assert_allclose(saved["attributions"], expected.values, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(saved["target_values"], expected.target_values, rtol=1e-5, atol=1e-6)
    # The movie's critic overlay: the same value (min twin Q at the held greedy action).
    movie = np.load(tmp_path / "movie" / "episode_0.npz")
    critic = explain(restored, movie["observations"], "gradient", "value")
    np.testing.assert_allclose(movie["values"], critic.target_values, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(movie["critic_attributions"], critic.values, rtol=1e-5, atol=1e-6)
    # Activation maximization of the value: the inputs found score at least the starting ones.
    found = np.load(tmp_path / "maximize" / "actmax_default_policy_value.npz")
    values = found["target_values"]  # (steps + 1, starts)
    assert values[-1].mean() > values[0].mean()
    assert ((found["inputs"] >= found["low"]) & (found["inputs"] <= found["high"])).all()
