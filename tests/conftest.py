"""Shared fixtures: real RLlib PPO algorithms, trained briefly, one framework per pytest process.

TensorFlow cannot build a graph-mode ("tf") and an eager ("tf2") RLlib
algorithm in one process, so the suite runs once per framework, chosen by
RLLIB_SALIENCY_TEST_FRAMEWORK (the Makefile runs all three): "tf" and "tf2" run
the old-API-stack tests in tests/, "torch" the new-API-stack tests in tests/new_stack/.
"""

from __future__ import annotations

# isort: off
import rllib_saliency  # noqa: F401  (sets up tf-keras before TensorFlow is imported)

# isort: on
import os

import numpy as np
import pytest
import ray

FRAMEWORK = os.environ.get("RLLIB_SALIENCY_TEST_FRAMEWORK", "tf")
assert FRAMEWORK in ("tf", "tf2", "torch"), FRAMEWORK

# Each process collects only its stack's tests; tests/contracts/ run in every process, on its stack
# (the STACK below), so a contract both stacks keep is written once.
collect_ignore_glob = ["test_*.py"] if FRAMEWORK == "torch" else ["new_stack/*"]


# A small GTrXL: two transformer units (two memory inputs), memory of 5 steps.
ATTENTION_MODEL = {
    "use_attention": True,
    "attention_num_transformer_units": 2,
    "attention_dim": 16,
    "attention_num_heads": 2,
    "attention_head_dim": 8,
    "attention_position_wise_mlp_dim": 16,
    "attention_memory_inference": 5,
    "attention_memory_training": 5,
    "max_seq_len": 8,
    "fcnet_hiddens": [16],
}


def ppo_config(env: str = "CartPole-v1", num_env_runners: int = 0, **training):
    from ray.rllib.algorithms.ppo import PPOConfig

    return (
        PPOConfig()
        .api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)
        .environment(env)
        .framework(FRAMEWORK)
        .env_runners(num_env_runners=num_env_runners, rollout_fragment_length="auto")
        .training(train_batch_size=256, minibatch_size=128, num_epochs=2, **training)
        .debugging(seed=0)
    )


def new_ppo_config(env: str = "CartPole-v1", num_env_runners: int = 0, **training):
    """A new-API-stack (torch RLModule) PPO config, small and seeded."""
    from ray.rllib.algorithms.ppo import PPOConfig

    return (
        PPOConfig()
        .environment(env)
        .env_runners(num_env_runners=num_env_runners)
        .training(train_batch_size=256, minibatch_size=128, num_epochs=1, **training)
        .debugging(seed=0)
    )


class Stack:
    """What a contract test (tests/contracts/) needs to know of the stack this process runs:
    "old" (framework "tf"/"tf2") or "new" (torch)."""

    def __init__(self, framework: str) -> None:
        self.framework = framework
        self.name = "new" if framework == "torch" else "old"

    def config(self, env: str = "CartPole-v1", num_env_runners: int = 0, **training):
        """A small, seeded PPO config on this stack."""
        make = new_ppo_config if self.name == "new" else ppo_config
        return make(env, num_env_runners, **training)

    def step(self, result: dict) -> int:
        """The TensorBoard step of a training result: the new stack has no timesteps_total, so
        the iteration (Tune's logger does the same)."""
        return int(result["training_iteration"] if self.name == "new" else result["timesteps_total"])

    def explained(self, algo, model_id: str = "default_policy") -> list[tuple]:
        """``(obs, actions)`` the callback explained last, per place that explains: on the old
        stack each sampling env runner (the remote ones, else the local one) with its own policy
        copy; on the new stack the driver, with the learner's module, every runner's rows at once."""
        from rllib_saliency.callbacks import find_saliency_callbacks

        if self.name == "new":
            return [find_saliency_callbacks(algo).last_explained[model_id]]

        def fetch(worker):
            return find_saliency_callbacks(worker).last_explained[model_id]

        group = algo.env_runner_group
        if group.num_remote_env_runners() > 0:
            return group.foreach_env_runner(fetch, local_env_runner=False)
        return [fetch(algo.env_runner)]

    def sampled_steps(self, algo, result: dict) -> int:
        """The env steps sampled so far: the step the CLI writes a saved algorithm's events at."""
        if self.name == "new":
            return int(result["env_runners"]["num_env_steps_sampled_lifetime"])
        return int(algo._counters["num_env_steps_sampled"])

    def model(self, algo, model_id: str = "default_policy"):
        """What the CLI explains for ``model_id`` of a saved algorithm: the old stack's policy,
        the new stack's learner module (value head included)."""
        if self.name == "new":
            return learner_module(algo, model_id)
        return algo.get_policy(model_id)

    def greedy(self, model, obs: np.ndarray) -> np.ndarray:
        """The model's greedy (explore=False) actions for a batch of observations."""
        if self.name == "new":
            import torch
            from ray.rllib.core.columns import Columns

            with torch.no_grad():
                out = model.forward_inference({Columns.OBS: torch.as_tensor(obs)})
            dist = model.get_inference_action_dist_cls().from_logits(out[Columns.ACTION_DIST_INPUTS])
            return dist.to_deterministic().sample().numpy()
        return model.compute_actions(obs, explore=False)[0]

    def save(self, algo, path: str) -> str:
        """The stack's own way to save (new stack: save_to_path; old stack: Trainable.save);
        returns the checkpoint's path."""
        if self.name == "new":
            return algo.save_to_path(path)
        return algo.save(path).checkpoint.path


STACK = Stack(FRAMEWORK)


def learner_module(algo, module_id: str = "default_policy"):
    """The local learner's full module (value head included); num_learners=0."""
    return algo.learner_group._learner.module[module_id]


@pytest.fixture(scope="session")
def ray_cluster():
    # Ray workers unpickle callbacks defined in test modules: let them import them.
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    paths = (tests_dir, os.path.join(tests_dir, "new_stack"), os.environ.get("PYTHONPATH"))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    # Logical CPUs: a Tune trial plus env runners needs more actors than the 2 real cores.
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


_algorithms: dict = {}


@pytest.fixture(scope="session")
def trained(ray_cluster):
    """``trained(env)``: a PPO algorithm on ``env``, on this process's stack, after one real
    training iteration; shared by the tests of a process."""

    def build(env: str):
        if env not in _algorithms:
            algo = STACK.config(env).build_algo()
            algo.train()
            _algorithms[env] = algo
        return _algorithms[env]

    yield build
    for algo in _algorithms.values():
        algo.stop()
    _algorithms.clear()


def rollout_observations(algo, n: int = 64, seed: int = 0) -> np.ndarray:
    """Real observations from the algorithm's env, acting with its own policy."""
    import gymnasium as gym

    env = gym.make(algo.config.env)
    policy = algo.get_policy()
    rows = []
    obs, _ = env.reset(seed=seed)
    while len(rows) < n:
        rows.append(obs)
        action = policy.compute_single_action(obs, explore=True)[0]
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset()
    return np.asarray(rows, np.float32)
