"""Offline algorithms (BC, MARWIL, CQL) on RLlib's new API stack: the callback explains rows of the
data the learner trains on, ``explain(algo, ...)`` against finite differences of the learner's
module, and the CLI on their checkpoints (rollouts through the config's env, else ``--obs``).

Real short trainings on data recorded here: a random policy's CartPole-v1 and Pendulum-v1
episodes, written as Parquet in the columns RLlib's offline reader takes (its ``SampleBatch``
format, uncompressed). BC is configured without an environment (spaces only), MARWIL and
CQL with one. One algorithm each, trained two iterations, shared by the module's tests.
"""

from __future__ import annotations

# isort: off
import rllib_saliency  # noqa: F401  (first: a safe TF/torch import order for RLlib's new stack)

# isort: on
import copy
import functools
import logging
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch
from analytic import central_differences
from cli_output import describe, run_parallel
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModule
from tb_events import load, scalars

from rllib_saliency import SaliencyCallbacks, explain
from rllib_saliency.callbacks import find_saliency_callbacks

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "rllib_saliency.cli"]
MODULE_DIR = os.path.join("learner_group", "learner", "rl_module", "default_policy")
NUM_SAMPLES = 48
ITERATIONS = 2
BATCH = 64  # rows per training minibatch; two minibatches per iteration (dataset_num_iters_per_learner)
ENVS = {"bc": "CartPole-v1", "marwil": "CartPole-v1", "cql": "Pendulum-v1"}
TARGETS = {
    "bc": ("action", "logp"),
    "marwil": ("action", "logp", "value"),
    "cql": ("action", "logp", "value"),  # value: SAC's, min twin Q at the held greedy action
}


def record(path: str, env_id: str, steps: int, seed: int = 0) -> pd.DataFrame:
    """A random policy's whole episodes as RLlib's offline reader takes them (one row per step)."""
    env = gym.make(env_id)
    env.action_space.seed(seed)
    rows, episode = [], 0
    while len(rows) < steps:
        obs, _ = env.reset(seed=seed + episode)
        done = False
        while not done:
            action = env.action_space.sample()
            new_obs, reward, terminated, truncated, _ = env.step(action)
            rows.append(
                {
                    "eps_id": f"{env_id}-{episode}",
                    "obs": obs.tolist(),
                    "actions": action.tolist() if isinstance(action, np.ndarray) else int(action),
                    "rewards": float(reward),
                    "new_obs": new_obs.tolist(),
                    "terminateds": bool(terminated),
                    "truncateds": bool(truncated),
                }
            )
            obs, done = new_obs, terminated or truncated
        episode += 1
    frame = pd.DataFrame(rows)
    os.makedirs(path, exist_ok=True)
    frame.to_parquet(os.path.join(path, "data.parquet"))
    return frame


def offline_config(name: str, data_dir: str, with_env: bool, **callback_options):
    from ray.rllib.algorithms.bc import BCConfig
    from ray.rllib.algorithms.cql import CQLConfig
    from ray.rllib.algorithms.marwil import MARWILConfig

    env = gym.make(ENVS[name])
    config = {"bc": BCConfig, "marwil": MARWILConfig, "cql": CQLConfig}[name]()
    training = {"lr": None} if name == "cql" else {}  # SAC-based: its own learning rates
    return (
        config.environment(
            ENVS[name] if with_env else None,
            observation_space=env.observation_space,
            action_space=env.action_space,
        )
        .offline_data(
            input_=[data_dir],
            input_compress_columns=[],
            # Ray Data on 2 cores: one pre-learner actor, else it can deadlock.
            map_batches_kwargs={"concurrency": 1, "num_cpus": 0.5},
            iter_batches_kwargs={"prefetch_batches": 1},
            dataset_num_iters_per_learner=2,
        )
        .training(train_batch_size_per_learner=BATCH, **training)
        .callbacks(
            SaliencyCallbacks.configure(
                num_samples=NUM_SAMPLES,
                methods=("gradient",),
                targets=TARGETS[name],
                trust_metrics=(),
                **callback_options,
            )
        )
        .debugging(seed=0)
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, tuple[str, pd.DataFrame]]:
    root = tmp_path_factory.mktemp("offline_data")
    return {
        env_id: (str(root / env_id), record(str(root / env_id), env_id, 500))
        for env_id in ("CartPole-v1", "Pendulum-v1")
    }


class Run:
    def __init__(self, algo, logdir: str, results: list[dict], checkpoint: str, warnings: list[str]):
        self.algo, self.logdir, self.results = algo, logdir, results
        self.checkpoint, self.warnings = checkpoint, warnings


@pytest.fixture(scope="module")
def runs(ray_cluster, data, tmp_path_factory):
    """Each algorithm trained once, when a test first needs it: ``runs("bc")``."""
    built: dict[str, Run] = {}

    def get(name: str) -> Run:
        if name not in built:
            root = tmp_path_factory.mktemp(name)
            options = {"every": 1, "logdir": str(root / "logs")}
            if name == "bc":  # no env: episodes skipped (said once); activation maximization
                options.update(
                    episode_every=1,
                    activation_maximization_every=1,
                    activation_maximization_options={"steps": 5, "n_starts": 2},
                )
            if name == "marwil":  # an env in the config: episodes played through it
                options.update(episode_every=1, episode_max_steps=20)
            config = offline_config(name, data[ENVS[name]][0], with_env=name != "bc", **options)
            handler = _Collect()
            logging.getLogger("rllib_saliency").addHandler(handler)
            try:
                algo = config.build_algo()
                results = [algo.train() for _ in range(ITERATIONS)]
            finally:
                logging.getLogger("rllib_saliency").removeHandler(handler)
            checkpoint = algo.save_to_path(str(root / "checkpoint"))
            built[name] = Run(algo, options["logdir"], results, checkpoint, handler.messages)
        return built[name]

    yield get
    for run in built.values():
        run.algo.stop()


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def learner_module(run: Run):
    return run.algo.learner_group._learner.module["default_policy"]


def tag_names(name: str, module) -> list[str]:
    """Box actions (Pendulum: one dimension) log "action" per dimension: action_0."""
    box = isinstance(module.action_space, gym.spaces.Box)
    return ["action_0" if target == "action" and box else target for target in TARGETS[name]]


# --- the callback: rows from the training data, tags, no errors ----------------------------------


@pytest.mark.parametrize("name", ["bc", "marwil", "cql"])
def test_callback_explains_training_rows_at_every_step(runs, data, name):
    run = runs(name)
    steps = [r["training_iteration"] for r in run.results]
    assert steps == list(range(1, ITERATIONS + 1))
    for result in run.results:
        saliency = result["saliency"]
        assert saliency.get("errors", 0) == 0, saliency
        assert saliency["seconds"] > 0 and saliency["default_policy/nonfinite_rows_skipped"] == 0
    # The rows explained last are rows of the data set the learner trained on, with their actions.
    callbacks = find_saliency_callbacks(run.algo)
    obs, actions = callbacks.last_explained["default_policy"]
    assert len(obs) == NUM_SAMPLES  # the reservoir's limit: 2 minibatches of 64 rows were offered
    frame = data[ENVS[name]][1]
    pairs = zip(frame["obs"], frame["actions"], strict=True)
    recorded = {tuple(np.float32(row)): action for row, action in pairs}
    for row, action in zip(obs, actions, strict=True):
        assert tuple(row) in recorded
        np.testing.assert_allclose(action, recorded[tuple(row)], rtol=1e-6)
    # Every tag at every step; the last step's values are explain() on the learner's module.
    module = learner_module(run)
    events = load(run.logdir, run.algo)
    for target, tag in zip(TARGETS[name], tag_names(name, module), strict=True):
        attribution = explain(module, obs, "gradient", target, actions=actions if target == "logp" else None)
        mean_abs = np.abs(attribution.values).mean(axis=0)
        for j in range(obs.shape[1]):
            series = scalars(events, f"saliency/default_policy/{tag}/gradient/mean_abs/f{j}")
            assert sorted(series) == steps, tag
            assert series[steps[-1]] == pytest.approx(mean_abs[j], rel=1e-4, abs=1e-7)
            assert run.results[-1]["saliency"][f"default_policy/{tag}/gradient/mean_abs/f{j}"] == (
                pytest.approx(mean_abs[j], rel=1e-4, abs=1e-7)
            )


def test_episodes_without_an_env_are_skipped_once_and_activation_maximization_runs(runs):
    run = runs("bc")
    skipped = [m for m in run.warnings if "training episodes" in m]
    assert len(skipped) == 1 and "names none" in skipped[0], run.warnings
    events = load(run.logdir, run.algo)
    for action in ("action_0", "action_1"):
        values = scalars(events, f"saliency/default_policy/actmax/{action}/value")
        assert sorted(values) == [1, 2]
    assert not any(tag.endswith("/episode") for tag in events.Tags()["images"])


def test_episodes_are_played_in_the_configs_env(runs):
    run = runs("marwil")
    assert not [m for m in run.warnings if "training episodes" in m]
    for result in run.results:
        saliency = result["saliency"]
        assert 1 <= saliency["default_policy/episode/length"] <= 20
        assert saliency["default_policy/episode/return"] == saliency["default_policy/episode/length"]
    events = load(run.logdir, run.algo)
    assert [e.step for e in events.Images("saliency/default_policy/episode")] == [1, 2]


# --- explain(algo, ...) against finite differences of the learner's module -----------------------


def _outputs(module, x: np.ndarray, target: str, actions: np.ndarray, column: np.ndarray) -> np.ndarray:
    """The target through the module itself (not through rllib-saliency's backend)."""
    batch = {Columns.OBS: torch.as_tensor(x, dtype=torch.float64)}
    with torch.no_grad():
        if target == "value" and hasattr(module, "qf_twin"):  # CQL (SAC's module): min twin Q at actions
            batch[Columns.ACTIONS] = torch.as_tensor(actions, dtype=torch.float64)
            twins = [
                module._qf_forward_train_helper(batch, module.qf_encoder, module.qf),
                module._qf_forward_train_helper(batch, module.qf_twin_encoder, module.qf_twin),
            ]
            return torch.minimum(*twins).numpy()
        if target == "value":
            return module.compute_values(batch).numpy()
        inputs = module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS]
        if target == "logp":
            dist = module.get_exploration_action_dist_cls().from_logits(inputs)
            return dist.logp(torch.as_tensor(actions)).numpy()
        return inputs.numpy()[np.arange(len(x)), column]


def finite_differences(module, obs, target, actions, eps: float = 1e-6) -> np.ndarray:
    x = obs.astype(np.float64)
    discrete = isinstance(module.action_space, gym.spaces.Discrete)
    with torch.no_grad():
        inputs = module.forward_inference({Columns.OBS: torch.as_tensor(x)})[Columns.ACTION_DIST_INPUTS]
    # "action": the greedy action's logit (Discrete), the first mean (Box), chosen at x.
    column = np.argmax(inputs.numpy(), axis=1) if discrete else np.zeros(len(x), int)
    return central_differences(lambda z: _outputs(module, z, target, actions, column), x, eps)


@pytest.mark.parametrize(
    "name,target",
    [(name, target) for name in ("bc", "marwil", "cql") for target in TARGETS[name]],
)
def test_explain_algo_matches_finite_differences(runs, data, name, target):
    run = runs(name)
    frame = data[ENVS[name]][1]
    obs = np.stack(frame["obs"][:16]).astype(np.float32)
    actions = np.stack(frame["actions"][:16]).astype(learner_module(run).action_space.dtype)
    if name == "cql":  # the squashed Gaussian's support is the normalized range (-1, 1)
        actions = np.clip(actions / 2.0, -0.9, 0.9)
    exact = copy.deepcopy(learner_module(run)).double()
    numeric = finite_differences(exact, obs, target, actions)
    assert np.abs(numeric).max() > 1e-4, "finite differences are ~0: the check would be vacuous"
    # CQL's value at the data's actions (the greedy, held action is test_sac.py's).
    given = actions if target == "logp" or (name == "cql" and target == "value") else None
    attribution = explain(run.algo, obs, "gradient", target, actions=given)
    np.testing.assert_allclose(attribution.values, numeric, rtol=1e-3, atol=1e-5)
    reference = _outputs(exact, obs.astype(np.float64), target, actions, np.zeros(len(obs), int))
    if target != "action":
        np.testing.assert_allclose(attribution.target_values, reference, rtol=1e-4, atol=1e-5)


def test_bc_value_is_refused_naming_the_module(runs):
    run = runs("bc")
    obs = np.zeros((2, 4), np.float32)
    with pytest.raises(Exception, match="DefaultBCTorchRLModule") as caught:
        explain(run.algo, obs, "gradient", "value")
    assert "value" in str(caught.value) and "compute_values" in str(caught.value)


# --- the CLI on the checkpoints ------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("offline_cli")
    obs = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    np.save(out / "obs.npy", obs)
    bc, marwil, cql = runs("bc").checkpoint, runs("marwil").checkpoint, runs("cql").checkpoint
    jobs = {
        "marwil_explain": ["explain", marwil, "--episodes", "1", "--target", "value"],
        "marwil_movie": ["movie", marwil, "--episodes", "1", "--max-steps", "15"],
        "marwil_maximize": ["maximize", marwil, "--episodes", "1", "--target", "action_1", "--steps", "5"],
        "cql_explain": ["explain", cql, "--episodes", "1", "--target", "action"],
        "bc_rollout": ["explain", bc, "--episodes", "1"],
        "bc_obs": ["explain", bc, "--obs", str(out / "obs.npy"), "--target", "logp"],
    }

    def start(name: str, args: list[str]) -> subprocess.Popen:
        command = [*CLI, *args, "--out", str(out / name), "--quiet"]
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    results = run_parallel({name: functools.partial(start, name, args) for name, args in jobs.items()}, 2)
    return {"out": out, "results": results, "obs": obs}


def test_cli_rolls_out_an_offline_checkpoint_through_its_configs_env(cli, runs):
    result = cli["results"]["marwil_explain"]
    assert result.returncode == 0, describe(result)
    data = np.load(cli["out"] / "marwil_explain" / "attributions_default_policy_value_gradient.npz")
    obs = data["observations"]
    # A real greedy CartPole episode, reset with the default --seed 0.
    first, _ = gym.make("CartPole-v1").reset(seed=0)
    np.testing.assert_allclose(obs[0], first, atol=1e-6)
    assert len(obs) >= 8
    module = RLModule.from_checkpoint(os.path.join(runs("marwil").checkpoint, MODULE_DIR))
    reference = explain(module, obs, "gradient", "value")
    np.testing.assert_allclose(data["attributions"], reference.values, rtol=1e-5, atol=1e-6)
    for name in ("marwil_movie", "marwil_maximize", "cql_explain"):
        assert cli["results"][name].returncode == 0, describe(cli["results"][name])
    assert (cli["out"] / "marwil_movie" / "episode_0.gif").is_file()


def test_cli_without_an_env_says_in_one_line_to_pass_obs(cli, runs):
    result = cli["results"]["bc_rollout"]
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--obs FILE" in lines[0] and "offline" in lines[0], describe(result)
    assert "Traceback" not in result.stderr
    given = cli["results"]["bc_obs"]
    assert given.returncode == 0, describe(given)
    data = np.load(cli["out"] / "bc_obs" / "attributions_default_policy_logp_gradient.npz")
    np.testing.assert_array_equal(data["observations"], cli["obs"])


def test_a_learner_without_rllibs_batch_update_is_reported_once_not_wrapped():
    """If RLlib renames or changes ``Learner._update`` (private API), installing says so once, clearly."""
    from rllib_saliency.callbacks.sampling import SampleStore
    from rllib_saliency.callbacks.settings import SaliencySettings
    from rllib_saliency.stacks.new.offline import UNSUPPORTED, _hook_learner

    class ChangedLearner:  # an RLlib whose learner updates through another method
        def _update(self, minibatches):
            return minibatches

    learner = ChangedLearner()
    make_store = functools.partial(SampleStore, SaliencySettings())
    stage, kind, message, count = _hook_learner(learner, make_store)
    assert (stage, kind, count) == ("offline sampling", "UnsupportedRLlib", 1)
    assert "ChangedLearner._update(batch)" in message and "_update(minibatches) found" in message
    assert learner._update("x") == "x"  # left as it was
    assert _hook_learner(learner, make_store) is None  # said once
    assert learner._rllib_saliency_offline_store == UNSUPPORTED
