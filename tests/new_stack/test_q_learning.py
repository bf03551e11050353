"""Q-networks (RLlib's DQN module, and any module implementing its Q-network API ``compute_q_values``)
on the new API stack: short real DQN trainings on CartPole with the callback (dueling on and off,
distributional, multi-agent), every target against finite differences of the module's own
``compute_q_values`` on a float64 copy, a linear Q-module whose targets have closed forms, the CLI
on a checkpoint, and the refusals (logp; advantage without a dueling head; a module that is still
unsupported)."""

from __future__ import annotations

import copy
import logging
import os

import gymnasium as gym
import numpy as np
import pytest
import torch
from analytic import central_differences
from cli_output import describe, run_commands
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis.q_net_api import QNetAPI
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule
from tb_events import load, scalars, text

import rllib_saliency  # noqa: F401  (first: a safe TF/torch import order for RLlib's new stack)
from rllib_saliency import SaliencyCallbacks, explain, learner_module
from rllib_saliency.callbacks.settings import SaliencySettings
from rllib_saliency.errors import UnsupportedModel, UnsupportedTarget
from rllib_saliency.sample_summaries import Sample, explain_sample

pytestmark = pytest.mark.slow

METHODS = ("gradient", "integrated_gradients")


def cartpole_obs(n: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 4)) * [1.0, 1.0, 0.1, 1.0]).astype(np.float32)


TRUST = ("completeness", "deletion", "agreement", "randomization")


def dqn_config(logdir: str, targets: tuple[str, ...], **training):
    from ray.rllib.algorithms.dqn import DQNConfig

    return (
        DQNConfig()
        .environment("CartPole-v1")
        .env_runners(num_env_runners=0, rollout_fragment_length=32)
        .training(num_steps_sampled_before_learning_starts=32, train_batch_size=32, **training)
        .reporting(min_sample_timesteps_per_iteration=64)
        .callbacks(SaliencyCallbacks.configure(every=1, targets=targets, logdir=logdir, trust_metrics=TRUST))
        .debugging(seed=0)
    )


def train(config, iterations: int = 2):
    """The algorithm after ``iterations`` train() calls, its results and what rllib_saliency logged
    at ERROR level meanwhile (one line per refusal, never a traceback per computation)."""
    algo = config.build_algo()
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("rllib_saliency")
    logger.addHandler(handler)
    try:
        results = [algo.train() for _ in range(iterations)]
    finally:
        logger.removeHandler(handler)
    return algo, results, [r.getMessage() for r in records if r.levelno >= logging.ERROR]


def check_tags(logdir: str, algo, results: list, module_id: str, targets: tuple[str, ...]) -> None:
    """Every (target, method) tag and trust metric at every iteration, equal to the result's numbers;
    no errors."""
    events = load(logdir, algo)
    steps = [r["training_iteration"] for r in results]
    for target in targets:
        prefix = f"saliency/{module_id}/{target}"
        trust = [f"{prefix}/integrated_gradients/trust/completeness_error"]
        trust += [f"{prefix}/agreement/gradient__integrated_gradients"]
        metrics = ("deletion_auc", "randomization_rank_corr")
        trust += [f"{prefix}/{m}/trust/{k}" for m in METHODS for k in metrics]
        for tag in trust:
            assert sorted(scalars(events, tag)) == steps, tag
        for method in METHODS:
            for feature in range(4):
                tag = f"saliency/{module_id}/{target}/{method}/mean_abs/f{feature}"
                logged = scalars(events, tag)
                assert sorted(logged) == steps, tag
                key = f"{module_id}/{target}/{method}/mean_abs/f{feature}"
                assert logged[steps[-1]] == pytest.approx(float(results[-1]["saliency"][key]), rel=1e-6)
    for result in results:
        assert "errors" not in result["saliency"], result["saliency"].get("errors")


@pytest.fixture(scope="module")
def dueling(ray_cluster, tmp_path_factory):
    """RLlib's DQN defaults (dueling, double-Q), two short iterations with the callback explaining
    action, value and advantage, and a checkpoint."""
    logdir = str(tmp_path_factory.mktemp("dqn_dueling"))
    targets = ("action", "value", "advantage")
    algo, results, errors = train(dqn_config(logdir, targets))
    checkpoint = algo.save_to_path(str(tmp_path_factory.mktemp("dqn") / "checkpoint"))
    yield algo, results, errors, logdir, targets, checkpoint
    algo.stop()


@pytest.fixture(scope="module")
def plain(ray_cluster, tmp_path_factory):
    """DQN without a dueling head, the callback also asked for logp and advantage (both refused)."""
    logdir = str(tmp_path_factory.mktemp("dqn_plain"))
    targets = ("action", "value", "logp", "advantage")
    algo, results, errors = train(dqn_config(logdir, targets, dueling=False, double_q=False))
    checkpoint = algo.save_to_path(str(tmp_path_factory.mktemp("dqn_plain_ckpt") / "checkpoint"))
    yield algo, results, errors, logdir, checkpoint
    algo.stop()


@pytest.fixture(scope="module")
def distributional(ray_cluster, tmp_path_factory):
    """Rainbow as RLlib's new stack builds it: distributional (num_atoms=5), dueling, double-Q,
    3-step targets, prioritized replay (RLlib's default buffer) and ``noisy=True``; one short
    iteration with the default targets."""
    logdir = str(tmp_path_factory.mktemp("dqn_atoms"))
    config = dqn_config(
        logdir, ("action", "value"), num_atoms=5, v_min=-10.0, v_max=10.0, n_step=3, noisy=True
    )
    algo, results, errors = train(config, iterations=1)
    checkpoint = algo.save_to_path(str(tmp_path_factory.mktemp("dqn_atoms_ckpt") / "checkpoint"))
    yield algo, results, errors, logdir, checkpoint
    algo.stop()


def float64_q(module) -> callable:
    """Q-values of a float64 copy of ``module``, as its own compute_q_values gives them."""
    replica = copy.deepcopy(module).double().eval()

    def q(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            batch = {Columns.OBS: torch.as_tensor(x, dtype=torch.float64)}
            return replica.compute_q_values(batch)["qf_preds"].numpy()

    return q


def check_against_q(algo, module, obs: np.ndarray, dueling_head: bool) -> None:
    """explain(algo, ...) for every Q target against finite differences of compute_q_values."""
    q = float64_q(module)
    rows = np.arange(len(obs))
    greedy = q(obs).argmax(axis=1)
    expected = {
        "action": lambda x: q(x)[rows, greedy],  # a* fixed at the explained observation
        "action_0": lambda x: q(x)[:, 0],
        "action_1": lambda x: q(x)[:, 1],
        "value": lambda x: q(x).max(axis=1),
    }
    if dueling_head:
        expected["advantage"] = lambda x: q(x)[rows, greedy] - q(x).mean(axis=1)
    for target, f in expected.items():
        attribution = explain(algo, obs, "gradient", target)
        np.testing.assert_allclose(attribution.target_values, f(obs.astype(np.float64)), rtol=1e-5, atol=1e-5)
        fd = central_differences(f, obs)
        scale = np.abs(fd).max()
        assert scale > 1e-3, target  # a map that is not all zeros
        np.testing.assert_allclose(attribution.values, fd, rtol=1e-3, atol=1e-4 * scale, err_msg=target)


def test_dueling_dqn_callback_logs_action_value_advantage_without_errors(dueling):
    algo, results, errors, logdir, targets, _ = dueling
    assert errors == []
    check_tags(logdir, algo, results, "default_policy", targets)
    # What each chart's number is, as the TEXT tab lists it (and the charts' subtitles say it):
    # Q-values, not logits.
    config = text(load(logdir), "saliency/config")
    assert "- default_policy: action = Q(s, a*), the greedy action's Q-value" in config
    assert "- default_policy: value = max over actions of Q(s, a)" in config
    assert "logit" not in config


def test_dueling_dqn_targets_match_finite_differences_of_compute_q_values(dueling):
    algo = dueling[0]
    module = learner_module(algo)
    assert type(module).__name__ == "DefaultDQNTorchRLModule" and module.uses_dueling
    check_against_q(algo, module, cartpole_obs(), dueling_head=True)
    # The advantage is the centred advantage stream itself, as RLlib's _qf_forward_helper combines it.
    obs = torch.as_tensor(cartpole_obs())
    with torch.no_grad():
        features = module.encoder({Columns.OBS: obs})["encoder_out"]
        a = module.af(features).numpy()
        q = module.compute_q_values({Columns.OBS: obs})["qf_preds"].numpy()
    greedy = q.argmax(axis=1)
    rows = np.arange(len(q))
    attribution = explain(algo, cartpole_obs(), "gradient", "advantage")
    centred = a[rows, greedy] - a.mean(axis=1)
    np.testing.assert_allclose(attribution.target_values, centred, rtol=1e-4, atol=1e-5)
    refusal = r"target 'logp'.*DefaultDQNTorchRLModule.*no action distribution"
    with pytest.raises(UnsupportedTarget, match=refusal):
        explain(algo, cartpole_obs(), target="logp")


def test_plain_dqn_works_and_refuses_logp_and_advantage_once(plain):
    algo, results, errors, logdir, _ = plain
    check_against_q(algo, learner_module(algo), cartpole_obs(), dueling_head=False)
    events = load(logdir, algo)
    for target in ("action", "value"):
        for method in METHODS:
            assert sorted(scalars(events, f"saliency/default_policy/{target}/{method}/mean_abs/f0")) == [1, 2]
    # logp and advantage: refused with one line each, logged once over the two computations.
    assert len(errors) == 2, errors
    assert all("Traceback" not in e and "DefaultDQNTorchRLModule" in e for e in errors), errors
    assert any("target 'logp'" in e and "no action distribution" in e for e in errors), errors
    assert any("target 'advantage'" in e and "no dueling head" in e for e in errors), errors
    with pytest.raises(UnsupportedTarget, match="no dueling head"):
        explain(algo, cartpole_obs(), target="advantage")


def test_distributional_dqn_explains_the_expected_q(distributional):
    algo, results, errors, logdir, _ = distributional
    assert errors == []
    check_tags(logdir, algo, results, "default_policy", ("action", "value"))
    module = learner_module(algo)
    assert module.num_atoms == 5 and module.uses_dueling and algo.config.n_step == 3
    assert algo.config.replay_buffer_config["type"] == "PrioritizedEpisodeReplayBuffer"
    # RLlib 2.60's new-stack DQN module has no noisy layers (`noisy` is an old-stack option): the
    # Q-values are deterministic, as the maps assume. If RLlib adds them, this fails, and the
    # maps' handling of a noisy layer's sampled weights (eval mode?) gets checked then.
    assert not [type(m).__name__ for m in module.modules() if "noisy" in type(m).__name__.lower()]
    check_against_q(algo, module, cartpole_obs(), dueling_head=False)
    # qf_preds is the expected Q, sum_i z_i p_i: what RLlib's greedy action is the argmax of.
    obs = torch.as_tensor(cartpole_obs())
    with torch.no_grad():
        out = module.compute_q_values({Columns.OBS: obs})
        expected_q = (out["atoms"] * out["qf_probs"]).sum(dim=-1).numpy()
    value = explain(algo, cartpole_obs(), target="value")
    np.testing.assert_allclose(value.target_values, expected_q.max(axis=1), rtol=1e-5)
    with pytest.raises(UnsupportedTarget, match=r"distributional \(num_atoms=5\)"):
        explain(algo, cartpole_obs(), target="advantage")


def test_cli_explains_maximizes_and_films_a_dqn_checkpoint(dueling, tmp_path):
    from ray.rllib.core.rl_module.rl_module import RLModule

    checkpoint = dueling[5]
    path = os.path.join(checkpoint, "learner_group", "learner", "rl_module", "default_policy")
    restored = RLModule.from_checkpoint(path)
    commands = {
        "advantage": ["explain", "--episodes", "1", "--target", "advantage"],
        "logp": ["explain", "--episodes", "1", "--target", "logp"],
        "movie": ["movie", "--episodes", "1"],
        "maximize": ["maximize", "--target", "value", "--steps", "20"],
    }
    runs = run_commands(checkpoint, commands, str(tmp_path))
    for name in ("advantage", "movie", "maximize"):
        assert runs[name].returncode == 0, describe(runs[name])
    saved = np.load(tmp_path / "advantage" / "attributions_default_policy_advantage_gradient.npz")
    expected = explain(restored, saved["observations"], "gradient", "advantage")
    np.testing.assert_allclose(saved["attributions"], expected.values, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(saved["target_values"], expected.target_values, rtol=1e-5, atol=1e-6)
    # The movie: the Q-values as the action outputs, and the critic overlay is value = max_a Q.
    movie = np.load(tmp_path / "movie" / "episode_0.npz")
    obs = movie["observations"]
    q = float64_q(restored)(obs.astype(np.float64))
    assert str(movie["action_output_kind"]) == "q_value"
    np.testing.assert_allclose(movie["action_outputs"], q, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(movie["values"], q.max(axis=1), rtol=1e-5, atol=1e-5)
    critic = explain(restored, obs, "gradient", "value")
    np.testing.assert_allclose(movie["critic_attributions"], critic.values, rtol=1e-5, atol=1e-6)
    # Named as what they are on the GIF and the page: the taken action's Q-value and max_a Q.
    assert list(movie["map_labels"]) == ["Q(s,a)", "max Q"]
    page = (tmp_path / "movie" / "episode_0.html").read_text()
    assert '"labels":["Q(s,a)","max Q"]' in page
    assert (tmp_path / "maximize" / "actmax_default_policy_value.npz").exists()
    assert runs["logp"].returncode == 1
    stderr = runs["logp"].stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("rllib-saliency explain: error:")]
    assert len(lines) == 1 and "DefaultDQNTorchRLModule" in lines[0] and "no action distribution" in lines[0]


def test_two_dqn_modules_in_multi_agent_cartpole(ray_cluster, tmp_path):
    from ray.rllib.examples.envs.classes.multi_agent import MultiAgentCartPole

    config = (
        dqn_config(str(tmp_path), ("action", "value"))
        .environment(MultiAgentCartPole, env_config={"num_agents": 2})
        .multi_agent(policies={"p0", "p1"}, policy_mapping_fn=lambda agent_id, *a, **k: f"p{agent_id}")
        .training(replay_buffer_config={"type": "MultiAgentEpisodeReplayBuffer", "capacity": 10000})
    )
    algo, results, errors = train(config, iterations=1)
    try:
        assert errors == []
        for module_id in ("p0", "p1"):
            check_tags(str(tmp_path), algo, results, module_id, ("action", "value"))
            obs = cartpole_obs(8)
            q = float64_q(learner_module(algo, module_id))
            value = explain(algo, obs, "gradient", "value", module_id=module_id)
            expected = q(obs.astype(np.float64)).max(axis=1)
            np.testing.assert_allclose(value.target_values, expected, rtol=1e-5, atol=1e-6)
        assert not np.allclose(
            explain(algo, cartpole_obs(8), target="value", module_id="p0").values,
            explain(algo, cartpole_obs(8), target="value", module_id="p1").values,
        )
    finally:
        algo.stop()


# --- a Q-module with known linear weights: closed forms --------------------------------------------


class LinearQModule(TorchRLModule, QNetAPI):
    """Q(s, a) = v.s + c + (W s + b)[a] - mean_a (W s + b)[a] (RLlib's dueling combination) when
    ``uses_dueling``, else Q(s, a) = (W s + b)[a]."""

    def setup(self):
        n, d = self.action_space.n, self.observation_space.shape[0]
        self.uses_dueling = bool(self.model_config.get("dueling", True))
        self.num_atoms = 1
        self.af = torch.nn.Linear(d, n)
        self.vf = torch.nn.Linear(d, 1)

    def compute_q_values(self, batch):
        a = self.af(batch[Columns.OBS])
        if not self.uses_dueling:
            return {"qf_preds": a}
        return {"qf_preds": self.vf(batch[Columns.OBS]) + a - a.mean(dim=-1, keepdim=True)}

    def compute_advantage_distribution(self, batch):
        raise NotImplementedError("expectation Q-learning only")

    def _forward(self, batch, **kwargs):
        return {Columns.ACTIONS: self.compute_q_values(batch)["qf_preds"].argmax(dim=-1)}


def linear_module(dueling: bool = True) -> tuple[LinearQModule, np.ndarray, np.ndarray, np.ndarray, float]:
    rng = np.random.default_rng(3)
    module = LinearQModule(
        observation_space=gym.spaces.Box(-10, 10, (4,), np.float32),
        action_space=gym.spaces.Discrete(3),
        model_config={"dueling": dueling},
    )
    w = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    v = rng.standard_normal(4).astype(np.float32)
    c = np.float32(0.5)
    with torch.no_grad():
        module.af.weight.copy_(torch.as_tensor(w))
        module.af.bias.copy_(torch.as_tensor(b))
        module.vf.weight.copy_(torch.as_tensor(v[None]))
        module.vf.bias.fill_(float(c))
    return module, w.astype(np.float64), b.astype(np.float64), v.astype(np.float64), float(c)


def test_linear_q_module_targets_have_closed_forms():
    module, w, b, v, c = linear_module()
    obs = cartpole_obs(12, seed=5)
    x = obs.astype(np.float64)
    a = x @ w.T + b
    centred = a - a.mean(axis=1, keepdims=True)
    q = (x @ v + c)[:, None] + centred
    greedy = q.argmax(axis=1)
    rows = np.arange(len(x))
    centred_w = w - w.mean(axis=0)  # d(A(s,a) - mean A)/ds
    expected = {
        "action": (q[rows, greedy], v + centred_w[greedy]),
        "action_2": (q[:, 2], np.tile(v + centred_w[2], (len(x), 1))),
        "value": (q.max(axis=1), v + centred_w[greedy]),
        "advantage": (centred[rows, greedy], centred_w[greedy]),
    }
    for target, (values, gradient) in expected.items():
        attribution = explain(module, obs, "gradient", target)
        np.testing.assert_allclose(attribution.target_values, values, rtol=1e-5, atol=1e-6, err_msg=target)
        np.testing.assert_allclose(attribution.values, gradient, rtol=1e-5, atol=1e-6, err_msg=target)
        if target != "value":  # (max_a Q is piecewise linear: its argmax may switch along the path)
            # A linear target, its action fixed at x: Integrated Gradients from the zero baseline
            # is (x - 0) * gradient exactly.
            ig = explain(module, obs, "integrated_gradients", target, baseline="zeros")
            np.testing.assert_allclose(ig.values, x * gradient, rtol=1e-4, atol=1e-5, err_msg=target)
            # Complete: f(x) - f(0) is the sum, f(0) read per row from one pass at the baseline.
            np.testing.assert_allclose(ig.delta, 0.0, atol=1e-4, err_msg=target)
    # Advantage of given actions: A(s, a) - mean A at those actions.
    chosen = np.array([0, 1, 2] * 4)
    given = explain(module, obs, "gradient", "advantage", actions=chosen)
    np.testing.assert_allclose(given.target_values, centred[rows, chosen], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(given.values, centred_w[chosen], rtol=1e-5, atol=1e-6)
    with pytest.raises(UnsupportedTarget, match=r"target 'logp'.*LinearQModule"):
        explain(module, obs, target="logp")
    plain_module = linear_module(dueling=False)[0]
    plain_value = explain(plain_module, obs, target="value")
    np.testing.assert_allclose(plain_value.target_values, a.max(axis=1), rtol=1e-5)
    with pytest.raises(UnsupportedTarget, match=r"target 'advantage'.*LinearQModule.*no dueling head"):
        explain(plain_module, obs, target="advantage")


class NoOutputModule(TorchRLModule):
    """Still unsupported: a forward pass with neither action-distribution inputs nor Q-values."""

    def setup(self):
        self.net = torch.nn.Linear(self.observation_space.shape[0], 2)

    def _forward(self, batch, **kwargs):
        return {Columns.EMBEDDINGS: self.net(batch[Columns.OBS])}


def test_a_still_unsupported_module_is_refused_once_naming_what_it_lacks():
    module = NoOutputModule(
        observation_space=gym.spaces.Box(-10, 10, (4,), np.float32), action_space=gym.spaces.Discrete(2)
    )
    obs = cartpole_obs(8)
    for target in ("action", "value", "logp"):
        with pytest.raises(UnsupportedModel) as caught:
            explain(module, obs, target=target)
        message = str(caught.value)
        assert "NoOutputModule" in message and "action_dist_inputs" in message
        assert "compute_q_values" in message
    assert isinstance(caught.value, TypeError)
    # The callback's per-module step: one record for the whole module, not one per target and method.
    settings = SaliencySettings(targets=("action", "value", "logp"))
    sample = Sample(obs, np.zeros(len(obs), np.int64), ())
    explained = explain_sample(module, "m", sample, settings, np.random.default_rng(0))
    errors = explained.errors
    assert explained.summaries == [] and len(errors) == 1
    stage, kind, details, count = errors[0]
    assert kind == "UnsupportedModel" and "NoOutputModule" in details and "Traceback" not in details


def test_cli_explains_plain_and_distributional_dqn_checkpoints(plain, distributional, tmp_path):
    """The CLI on the other two Q-heads: a greedy episode each, its value map equal to explain() on
    the module restored from the checkpoint (whose targets are checked against finite
    differences above)."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    checkpoints = {"plain": plain[4], "distributional": distributional[4]}
    value = ["explain", "--episodes", "1", "--target", "value"]
    for name, checkpoint in checkpoints.items():
        run = run_commands(checkpoint, {name: value}, str(tmp_path))[name]
        assert run.returncode == 0, describe(run)
        path = os.path.join(checkpoint, "learner_group", "learner", "rl_module", "default_policy")
        restored = RLModule.from_checkpoint(path)
        saved = np.load(tmp_path / name / "attributions_default_policy_value_gradient.npz")
        expected = explain(restored, saved["observations"], "gradient", "value")
        np.testing.assert_allclose(saved["attributions"], expected.values, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(saved["target_values"], expected.target_values, rtol=1e-5, atol=1e-6)
