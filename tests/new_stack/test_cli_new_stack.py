"""``rllib-saliency explain|maximize`` on new-API-stack checkpoints (torch RLModules), as subprocesses:
what only the new stack has (the contracts both stacks keep are in tests/contracts/test_cli_commands.py).

Tiny real PPO runs (one training iteration) are saved with ``algo.save_to_path``:
FrozenLake-v1 (Discrete
observations) with a ``FlattenObservations`` env-to-module connector, so that the
module sees one-hot vectors, not the env's integers, and a two-module MultiAgentCartPole
(three agents: agent 0 acts with module "p0", agents 1 and 2 with "p1"), rolled out
for each module id. The CLI runs as a subprocess
(real exit codes); its outputs are checked against ``explain()`` /
``maximize_activation()`` on the checkpoint's learner module, and its rollouts
against replays of the same seeded episodes.
"""

from __future__ import annotations

# isort: off
import rllib_saliency  # noqa: F401  (first: a safe TF/torch import order for RLlib's new stack)

# isort: on
import os

import numpy as np
import pytest
import torch
from cli_output import assert_cli_error, describe, replay, run_all
from conftest import new_ppo_config
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModule
from tb_events import load, scalars

from rllib_saliency import explain, maximize_activation

pytestmark = pytest.mark.slow

PARALLEL = 2  # CLI processes at once
MODULE_DIR = os.path.join("learner_group", "learner", "rl_module", "default_policy")


def multi_agent_config(num_agents: int = 3):
    """MultiAgentCartPole (each agent its own CartPole, all reset with the same seed): agent 0
    acts with module "p0", every other agent with "p1". The mapping is a lambda, which the
    checkpoint pickles by value (the CLI processes need not import this module)."""
    from ray.rllib.examples.envs.classes.multi_agent import MultiAgentCartPole

    return (
        new_ppo_config()
        .environment(MultiAgentCartPole, env_config={"num_agents": num_agents})
        .multi_agent(
            policies={"p0", "p1"},
            policy_mapping_fn=lambda agent, episode, **kw: "p0" if agent == 0 else "p1",
        )
    )


@pytest.fixture(scope="module")
def setup(ray_cluster, tmp_path_factory):
    from ray.rllib.connectors.env_to_module import FlattenObservations

    root = tmp_path_factory.mktemp("cli_new_stack")
    checkpoints, steps = {}, {}
    configs = {
        "frozen": new_ppo_config("FrozenLake-v1").env_runners(
            env_to_module_connector=lambda env, spaces=None, device=None: FlattenObservations()
        ),
    }
    for name, config in configs.items():
        algo = config.build_algo()
        result = algo.train()
        steps[name] = int(result["env_runners"]["num_env_steps_sampled_lifetime"])
        checkpoints[name] = str(root / name)
        algo.save_to_path(checkpoints[name])
        algo.stop()
    # Multi-agent (two modules, three agents; one training iteration): --policy picks the module.
    multi = multi_agent_config().build_algo()
    result = multi.train()
    steps["multi"] = int(result["env_runners"]["num_env_steps_sampled_lifetime"])
    checkpoints["multi"] = str(root / "multi")
    multi.save_to_path(checkpoints["multi"])
    multi.stop()
    # One agent, mapped to "p0": module "p1" never acts (saved untrained).
    lonely = multi_agent_config(num_agents=1).build_algo()
    checkpoints["multi_unused"] = str(root / "multi_unused")
    lonely.save_to_path(checkpoints["multi_unused"])
    lonely.stop()
    # An RLModule checkpoint on its own (no env, no connectors): explained on --obs only.
    # (Module "p0" of the multi-agent one: it observes CartPole.)
    module = RLModule.from_checkpoint(os.path.join(checkpoints["multi"], os.path.dirname(MODULE_DIR), "p0"))
    checkpoints["module"] = str(root / "module")
    module.save_to_path(checkpoints["module"])
    obs = np.random.default_rng(0).normal(0.0, 0.5, (30, 4)).astype(np.float32)
    np.save(root / "obs.npy", obs)

    out = root / "out"
    jobs = {
        "frozen_value": [
            "explain",
            checkpoints["frozen"],
            "--episodes",
            "3",
            "--target",
            "value",
            "--method",
            "integrated_gradients",
            "--method-option",
            "steps=8",
            "--out",
            str(out / "frozen_value"),
            "--quiet",
        ],
        "module_obs": [
            "explain",
            checkpoints["module"],
            "--obs",
            str(root / "obs.npy"),
            "--target",
            "logp",
            "--out",
            str(out / "module_obs"),
            "--quiet",
        ],
        "multi_obs": [
            "explain",
            checkpoints["multi"],
            "--policy",
            "p1",
            "--obs",
            str(root / "obs.npy"),
            "--feature-names",
            "w,x,y,z",
            "--out",
            str(out / "multi_obs"),
            "--quiet",
        ],
        # Multi-agent rollouts, one module at a time (agents 1 and 2 both act with p1).
        "multi_p0": [
            "explain",
            checkpoints["multi"],
            "--policy",
            "p0",
            "--episodes",
            "2",
            "--out",
            str(out / "multi_p0"),
        ],
        "multi_p1_value": [
            "explain",
            checkpoints["multi"],
            "--policy",
            "p1",
            "--episodes",
            "2",
            "--target",
            "value",
            "--out",
            str(out / "multi_p1_value"),
            "--quiet",
        ],
        "multi_maximize": [
            "maximize",
            checkpoints["multi"],
            "--policy",
            "p1",
            "--episodes",
            "1",
            "--target",
            "action_1",
            "--steps",
            "10",
            "--n-starts",
            "2",
            "--out",
            str(out / "multi_maximize"),
            "--quiet",
        ],
    }
    results = run_all(jobs, PARALLEL)
    yield {
        "root": root,
        "checkpoints": checkpoints,
        "steps": steps,
        "results": results,
        "out": out,
        "obs": obs,
    }


def learner_module(checkpoint: str):
    return RLModule.from_checkpoint(os.path.join(checkpoint, MODULE_DIR))


def greedy(module, obs: np.ndarray) -> np.ndarray:
    out = module.forward_inference({Columns.OBS: torch.as_tensor(obs)})
    dist = module.get_inference_action_dist_cls().from_logits(out[Columns.ACTION_DIST_INPUTS])
    return dist.to_deterministic().sample().numpy()


def test_value_target_on_the_connectors_observations(setup):
    """FrozenLake's Discrete observations reach the module one-hot (FlattenObservations):
    those are what is recorded and explained; the value head is the learner module's."""
    result = setup["results"]["frozen_value"]
    assert result.returncode == 0, describe(result)
    data = np.load(
        setup["out"] / "frozen_value" / "attributions_default_policy_value_integrated_gradients.npz"
    )
    obs, actions = data["observations"], data["actions"]
    assert obs.shape[1:] == (16,)
    np.testing.assert_array_equal(obs.sum(axis=1), 1.0)
    assert set(np.unique(obs)) == {0.0, 1.0}
    np.testing.assert_array_equal(
        obs, replay("FrozenLake-v1", actions, data["episode_ids"], lambda o: np.eye(16)[o])
    )
    module = learner_module(setup["checkpoints"]["frozen"])
    np.testing.assert_array_equal(actions, greedy(module, obs))
    with torch.no_grad():
        values = module.compute_values({Columns.OBS: torch.as_tensor(obs)}).numpy()
    np.testing.assert_allclose(data["target_values"], values, rtol=1e-5, atol=1e-6)
    reference = explain(module, obs, "integrated_gradients", "value", steps=8)
    np.testing.assert_allclose(data["attributions"], reference.values, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(data["delta"], reference.delta, atol=1e-5)
    events = load(str(setup["out"] / "frozen_value"))
    assert scalars(events, "saliency/default_policy/value/integrated_gradients/mean_abs/f15")


def test_rl_module_checkpoint_with_an_obs_file(setup):
    result = setup["results"]["module_obs"]
    assert result.returncode == 0, describe(result)
    data = np.load(setup["out"] / "module_obs" / "attributions_default_policy_logp_gradient.npz")
    np.testing.assert_array_equal(data["observations"], setup["obs"])
    module = RLModule.from_checkpoint(setup["checkpoints"]["module"])
    reference = explain(module, setup["obs"], "gradient", "logp")
    np.testing.assert_allclose(data["attributions"], reference.values, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(data["actions"], greedy(module, setup["obs"]))
    assert int(data["step"]) == 0  # an RLModule checkpoint has no training counters
    # An RLModule checkpoint holds no algorithm config: default names.
    assert list(data["feature_names"]) == ["f0", "f1", "f2", "f3"]


def test_multi_agent_module_chosen_with_policy_on_an_obs_file(setup):
    result = setup["results"]["multi_obs"]
    assert result.returncode == 0, describe(result)
    directory = setup["out"] / "multi_obs"
    data = np.load(directory / "attributions_p1_action_gradient.npz")
    assert str(data["policy_id"]) == "p1"
    module = RLModule.from_checkpoint(
        os.path.join(setup["checkpoints"]["multi"], "learner_group", "learner", "rl_module", "p1")
    )
    reference = explain(module, setup["obs"], "gradient", "action")
    np.testing.assert_allclose(data["attributions"], reference.values, rtol=1e-5, atol=1e-6)
    # --feature-names names the features (over the checkpoint's, if it has any).
    assert list(data["feature_names"]) == ["w", "x", "y", "z"]
    assert scalars(load(str(directory)), "saliency/p1/action/gradient/mean_abs/w")


def multi_module(setup, module_id: str):
    return RLModule.from_checkpoint(
        os.path.join(setup["checkpoints"]["multi"], "learner_group", "learner", "rl_module", module_id)
    )


def replay_agents(data) -> np.ndarray:
    """MultiAgentCartPole's agents each play a CartPole reset with the episode's seed: every
    (episode, agent)'s rows replayed with its recorded actions, in the recorded row order."""
    replayed = np.empty_like(data["observations"])
    for k in np.unique(data["episode_ids"]):
        for agent in np.unique(data["agent_ids"]):
            rows = (data["episode_ids"] == k) & (data["agent_ids"] == agent)
            replayed[rows] = replay("CartPole-v1", data["actions"][rows], np.full(rows.sum(), k))
    return replayed


@pytest.mark.parametrize(
    ("job", "module_id", "target", "agents"),
    [("multi_p0", "p0", "action", ["0"]), ("multi_p1_value", "p1", "value", ["1", "2"])],
)
def test_multi_agent_rollouts_record_the_chosen_modules_agents(setup, job, module_id, target, agents):
    """Every agent acts with its mapped module (policy_mapping_fn); the rows recorded are the
    chosen module's env-to-module outputs, each with its agent, and are explained on it."""
    result = setup["results"][job]
    assert result.returncode == 0, describe(result)
    assert f"module {module_id!r}" in result.stdout and f"(agents {', '.join(agents)})" in result.stdout
    data = np.load(setup["out"] / job / f"attributions_{module_id}_{target}_gradient.npz")
    obs, actions = data["observations"], data["actions"]
    assert str(data["policy_id"]) == module_id and obs.shape[1:] == (4,)
    assert sorted(np.unique(data["agent_ids"])) == agents and sorted(np.unique(data["episode_ids"])) == [0, 1]
    assert len(obs) == len(actions) == len(data["agent_ids"]) == len(data["attributions"])
    module = multi_module(setup, module_id)
    # Greedy actions of the chosen module, along each agent's seeded episode (whole episodes).
    np.testing.assert_array_equal(actions, greedy(module, obs))
    np.testing.assert_allclose(obs, replay_agents(data), atol=1e-6)
    reference = explain(module, obs, "gradient", target)
    np.testing.assert_allclose(data["attributions"], reference.values, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(data["target_values"], reference.target_values, rtol=1e-5, atol=1e-6)
    if target == "value":  # the learner module's value head
        with torch.no_grad():
            values = module.compute_values({Columns.OBS: torch.as_tensor(obs)}).numpy()
        np.testing.assert_allclose(data["target_values"], values, rtol=1e-5, atol=1e-6)
    step = setup["steps"]["multi"]
    assert int(data["step"]) == step
    series = scalars(load(str(setup["out"] / job)), f"saliency/{module_id}/{target}/gradient/mean_abs/f0")
    assert list(series) == [step]


def test_multi_agent_maximize_from_rollouts(setup):
    result = setup["results"]["multi_maximize"]
    assert result.returncode == 0, describe(result)
    data = np.load(setup["out"] / "multi_maximize" / "actmax_p1_action_1.npz")
    # The same seeded episode 0 as explain's rollout of p1: agents 1 and 2's rows.
    rollout = np.load(setup["out"] / "multi_p1_value" / "attributions_p1_value_gradient.npz")
    np.testing.assert_array_equal(data["observations"], rollout["observations"][rollout["episode_ids"] == 0])
    module = multi_module(setup, "p1")
    reference = maximize_activation(
        module, "action_1", obs=data["observations"], steps=10, n_starts=2, seed=0
    )
    np.testing.assert_allclose(data["inputs"], reference.inputs, rtol=1e-4, atol=1e-5)
    # At the checkpoint's step by default (--step not given).
    value = scalars(load(str(setup["out"] / "multi_maximize")), "saliency/p1/actmax/action_1/value")
    assert list(value) == [setup["steps"]["multi"]]


def test_multi_agent_module_no_agent_acts_with_exits_1(setup, capsys):
    from rllib_saliency.cli import main

    argv = ["explain", setup["checkpoints"]["multi_unused"], "--policy", "p1", "--episodes", "1"]
    assert main([*argv, "--out", str(setup["root"] / "unused"), "--quiet"]) == 1
    error = capsys.readouterr().err
    assert "rllib-saliency explain: error: --policy 'p1': no agent acted with module 'p1'" in error, error
    assert "'p0': agents ['0']" in error and "Traceback" not in error


@pytest.mark.parametrize(
    ("arguments", "messages"),
    [
        (["explain", "{module}"], ["is an RLModule checkpoint", "--obs FILE"]),
        (["explain", "{module}", "--obs", "{root}/bad.npy"], ["observations have shape (5, 3)", "(N, 4)"]),
        (["explain", "{multi}"], ["holds several RLModules ('p0', 'p1')", "--policy MODULE_ID"]),
        (["explain", "{multi}", "--policy", "p7"], ["--policy 'p7'", "available module ids: 'p0', 'p1'"]),
        (
            ["movie", "{multi}", "--policy", "p1"],
            ["multi-agent checkpoint", "movies of multi-agent environments are not supported", "--policy"],
        ),
    ],
)
def test_module_and_multi_agent_errors_exit_1_with_a_message(setup, capsys, arguments, messages):
    """Errors found before anything is loaded, checked in this process through main() (the errors
    of both stacks: tests/contracts/test_cli_commands.py)."""

    root = setup["root"]
    np.save(root / "bad.npy", np.zeros((5, 3), np.float32))
    paths = {"root": str(root), **setup["checkpoints"]}
    argv = [a.format(**paths) for a in arguments] + ["--out", str(root / "unused")]
    assert_cli_error(argv, capsys, messages)


# Stateful modules: a tiny LSTM PPO (DefaultModelConfig(use_lstm=True)).
LSTM_CELL = 16
STATE_NAMES = ("state_in_c", "state_in_h")  # the state leaves, as the npz holds them


@pytest.fixture(scope="module")
def lstm_setup(ray_cluster, tmp_path_factory):
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    root = tmp_path_factory.mktemp("cli_new_stack_lstm")
    config = (
        new_ppo_config("CartPole-v1")
        .training(train_batch_size=128, minibatch_size=64)
        .rl_module(model_config=DefaultModelConfig(use_lstm=True, max_seq_len=8, lstm_cell_size=LSTM_CELL))
    )
    algo = config.build_algo()
    algo.train()
    checkpoint = str(root / "lstm")
    algo.save_to_path(checkpoint)
    algo.stop()
    # Multi-agent, stateful: two agents, each with its own LSTM module (p0, p1).
    multi = (
        multi_agent_config(num_agents=2)
        .training(train_batch_size=128, minibatch_size=64)
        .rl_module(model_config=DefaultModelConfig(use_lstm=True, max_seq_len=8, lstm_cell_size=LSTM_CELL))
        .build_algo()
    )
    multi.train()
    multi_checkpoint = str(root / "lstm_multi")
    multi.save_to_path(multi_checkpoint)
    multi.stop()
    obs = np.random.default_rng(1).normal(0.0, 0.5, (12, 4)).astype(np.float32)
    np.save(root / "obs.npy", obs)
    out = root / "out"
    first = run_all(
        {
            "rollout": ["explain", checkpoint, "--episodes", "3", "--out", str(out / "rollout"), "--quiet"],
            "multi": [
                "explain",
                multi_checkpoint,
                "--policy",
                "p1",
                "--episodes",
                "2",
                "--out",
                str(out / "multi"),
                "--quiet",
            ],
            "obs": [
                "explain",
                checkpoint,
                "--obs",
                str(root / "obs.npy"),
                "--target",
                "logp",
                "--out",
                str(out / "obs"),
                "--quiet",
            ],
            "maximize": [
                "maximize",
                checkpoint,
                "--episodes",
                "1",
                "--target",
                "action_1",
                "--steps",
                "10",
                "--n-starts",
                "2",
                "--out",
                str(out / "maximize"),
                "--quiet",
            ],
        },
        PARALLEL,
    )
    rollout_npz = out / "rollout" / "attributions_default_policy_action_gradient.npz"
    # The rollout's npz given back with --obs: explained in the states it holds.
    again = run_all(
        {"npz": ["explain", checkpoint, "--obs", str(rollout_npz), "--out", str(out / "npz"), "--quiet"]},
        PARALLEL,
    )
    yield {
        "root": root,
        "checkpoint": checkpoint,
        "multi_checkpoint": multi_checkpoint,
        "out": out,
        "obs": obs,
        "results": {**first, **again},
    }


def lstm_step(module, obs: np.ndarray, states: dict[str, np.ndarray]):
    """One step of the module per row from the given state: (greedy actions, action-distribution
    inputs, next state by name), through forward_inference with a time axis of one step."""
    state_in = {name.removeprefix("state_in_"): torch.as_tensor(states[name]) for name in STATE_NAMES}
    with torch.no_grad():
        out = module.forward_inference(
            {Columns.OBS: torch.as_tensor(obs)[:, None], Columns.STATE_IN: state_in}
        )
    logits = out[Columns.ACTION_DIST_INPUTS][:, 0]
    actions = module.get_inference_action_dist_cls().from_logits(logits).to_deterministic().sample()
    state_out = {f"state_in_{key}": value.numpy() for key, value in out[Columns.STATE_OUT].items()}
    return actions.numpy(), logits.numpy(), state_out


def initial_state(module, n: int) -> dict[str, np.ndarray]:
    initial = module.get_initial_state()
    return {
        name: np.repeat(initial[name.removeprefix("state_in_")].numpy()[None], n, axis=0)
        for name in STATE_NAMES
    }


def test_stateful_module_rolls_out_and_explains_in_the_recorded_states(lstm_setup):
    result = lstm_setup["results"]["rollout"]
    assert result.returncode == 0, describe(result)
    data = np.load(lstm_setup["out"] / "rollout" / "attributions_default_policy_action_gradient.npz")
    obs, actions, episode_ids = data["observations"], data["actions"], data["episode_ids"]
    states = {name: data[name] for name in STATE_NAMES}
    n = len(obs)
    assert obs.shape[1:] == (4,) and sorted(np.unique(episode_ids)) == [0, 1, 2]
    for name in STATE_NAMES:
        assert states[name].shape == (n, 1, LSTM_CELL), name
    module = RLModule.from_checkpoint(os.path.join(lstm_setup["checkpoint"], MODULE_DIR))
    assert module.is_stateful()
    # The seeded episodes, replayed with the recorded actions.
    np.testing.assert_allclose(obs, replay("CartPole-v1", actions, episode_ids), atol=1e-6)
    # An episode's first step starts from the initial state; later ones do not (all of them).
    first = np.r_[True, episode_ids[1:] != episode_ids[:-1]]
    initial = initial_state(module, n)
    for name in STATE_NAMES:
        np.testing.assert_array_equal(states[name][first], initial[name][first])
        assert not np.any(np.all(states[name][~first] == initial[name][~first], axis=(1, 2))), name
    # Step by step: obs + recorded state give the recorded (greedy) action, and the step's
    # STATE_OUT is the next step's recorded state within an episode.
    greedy_actions, _, state_out = lstm_step(module, obs, states)
    np.testing.assert_array_equal(actions, greedy_actions)
    following = ~first[1:]
    for name in STATE_NAMES:
        np.testing.assert_allclose(states[name][1:][following], state_out[name][:-1][following], atol=1e-6)
    # The attributions are explain()'s given those states (a dict by name or the leaves in order).
    reference = explain(module, obs, "gradient", "action", state=states)
    np.testing.assert_allclose(data["attributions"], reference.values, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(data["target_values"], reference.target_values, rtol=1e-5, atol=1e-6)
    by_order = explain(module, obs, "gradient", "action", state=tuple(states[name] for name in STATE_NAMES))
    np.testing.assert_allclose(by_order.values, reference.values, rtol=1e-6, atol=1e-7)
    # Not the initial-state attributions (the state matters).
    assert not np.allclose(explain(module, obs, "gradient", "action").values, reference.values)


def test_stateful_module_on_an_npz_with_states_and_an_obs_file(lstm_setup):
    module = RLModule.from_checkpoint(os.path.join(lstm_setup["checkpoint"], MODULE_DIR))
    # The rollout's npz: explained again in the states it holds.
    result = lstm_setup["results"]["npz"]
    assert result.returncode == 0, describe(result)
    rollout = np.load(lstm_setup["out"] / "rollout" / "attributions_default_policy_action_gradient.npz")
    data = np.load(lstm_setup["out"] / "npz" / "attributions_default_policy_action_gradient.npz")
    for name in ("observations", "actions", *STATE_NAMES):
        np.testing.assert_array_equal(data[name], rollout[name], err_msg=name)
    np.testing.assert_allclose(data["attributions"], rollout["attributions"], rtol=1e-5, atol=1e-6)
    # A plain observation file: every observation from the initial state.
    result = lstm_setup["results"]["obs"]
    assert result.returncode == 0, describe(result)
    data = np.load(lstm_setup["out"] / "obs" / "attributions_default_policy_logp_gradient.npz")
    obs = lstm_setup["obs"]
    initial = initial_state(module, len(obs))
    for name in STATE_NAMES:
        np.testing.assert_array_equal(data[name], initial[name])
    reference = explain(module, obs, "gradient", "logp", state=initial)
    np.testing.assert_allclose(data["attributions"], reference.values, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(data["actions"], lstm_step(module, obs, initial)[0])


def test_stateful_module_maximize_from_the_initial_state(lstm_setup):
    result = lstm_setup["results"]["maximize"]
    assert result.returncode == 0, describe(result)
    data = np.load(lstm_setup["out"] / "maximize" / "actmax_default_policy_action_1.npz")
    module = RLModule.from_checkpoint(os.path.join(lstm_setup["checkpoint"], MODULE_DIR))
    reference = maximize_activation(
        module, "action_1", obs=data["observations"], steps=10, n_starts=2, seed=0
    )
    np.testing.assert_allclose(data["inputs"], reference.inputs, rtol=1e-4, atol=1e-5)
    # The optimised inputs' target from the initial state, step by step.
    _, logits, _ = lstm_step(
        module, data["inputs"].astype(np.float32), initial_state(module, len(data["inputs"]))
    )
    np.testing.assert_allclose(data["target_values"][-1], logits[:, 1], rtol=1e-4, atol=1e-5)


def test_stateful_multi_agent_module_rolls_out_in_the_recorded_states(lstm_setup):
    """Multi-agent and stateful: module p1's rows (agent 1's) with the state each step was taken
    in, fed back by RLlib's connectors from the module's STATE_OUT as in single-agent runs."""
    result = lstm_setup["results"]["multi"]
    assert result.returncode == 0, describe(result)
    data = np.load(lstm_setup["out"] / "multi" / "attributions_p1_action_gradient.npz")
    obs, actions, episode_ids = data["observations"], data["actions"], data["episode_ids"]
    states = {name: data[name] for name in STATE_NAMES}
    assert list(np.unique(data["agent_ids"])) == ["1"] and sorted(np.unique(episode_ids)) == [0, 1]
    for name in STATE_NAMES:
        assert states[name].shape == (len(obs), 1, LSTM_CELL), name
    module = RLModule.from_checkpoint(
        os.path.join(lstm_setup["multi_checkpoint"], "learner_group", "learner", "rl_module", "p1")
    )
    np.testing.assert_allclose(obs, replay("CartPole-v1", actions, episode_ids), atol=1e-6)
    first = np.r_[True, episode_ids[1:] != episode_ids[:-1]]
    initial = initial_state(module, len(obs))
    greedy_actions, _, state_out = lstm_step(module, obs, states)
    np.testing.assert_array_equal(actions, greedy_actions)
    following = ~first[1:]
    for name in STATE_NAMES:
        np.testing.assert_array_equal(states[name][first], initial[name][first])
        np.testing.assert_allclose(states[name][1:][following], state_out[name][:-1][following], atol=1e-6)
    reference = explain(module, obs, "gradient", "action", state=states)
    np.testing.assert_allclose(data["attributions"], reference.values, rtol=1e-5, atol=1e-6)
