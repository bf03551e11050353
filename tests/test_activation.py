"""maximize_activation() on real PPO policies: CartPole (vector) and a tiny image env (conv model)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from conftest import FRAMEWORK, ppo_config, rollout_observations
from ray.tune.registry import register_env

from rllib_saliency import ActivationMaximization, explain, maximize_activation
from rllib_saliency.activation import DEFAULT_BOUND, _total_variation

pytestmark = pytest.mark.slow

IMAGE_ENV = "rllib_saliency_test_spot_image"
# 10x10 -> (3x3, stride 2, "same") 5x5x4 -> (5x5, "valid") 1x1x8: what VisionNetwork needs.
CONV_FILTERS = [[4, [3, 3], 2], [8, [5, 5], 1]]


class SpotImageEnv(gym.Env):
    """A bright 2x2 spot on a dim 10x10 image; reward for saying which half it is in."""

    observation_space = gym.spaces.Box(0.0, 1.0, (10, 10, 1), np.float32)
    action_space = gym.spaces.Discrete(2)

    def _observe(self) -> np.ndarray:
        image = self.np_random.uniform(0.0, 0.2, (10, 10, 1)).astype(np.float32)
        row, self.column = self.np_random.integers(0, 9, 2)
        image[row : row + 2, self.column : self.column + 2] = 1.0
        return image

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observe(), {}

    def step(self, action):
        reward = float(int(action) == int(self.column >= 5))
        self.t += 1
        return self._observe(), reward, False, self.t >= 16, {}


register_env(IMAGE_ENV, lambda config: SpotImageEnv())


@pytest.fixture(scope="module")
def image_policy(ray_cluster):
    algo = ppo_config(IMAGE_ENV).training(model={"conv_filters": CONV_FILTERS}).build_algo()
    algo.train()
    yield algo.get_policy()
    algo.stop()


def image_observations(n: int, seed: int = 0) -> np.ndarray:
    env = SpotImageEnv()
    env.reset(seed=seed)
    return np.stack([env._observe() for _ in range(n)])


def policy_logits(policy, obs: np.ndarray) -> np.ndarray:
    """The model output through RLlib itself (not through our backends)."""
    return policy.compute_actions(obs, explore=False)[2]["action_dist_inputs"]


def test_raises_each_target_on_trained_cartpole_within_bounds(trained):
    algo = trained("CartPole-v1")
    policy = algo.get_policy()
    obs = rollout_observations(algo, n=128)
    space = policy.observation_space
    for target in ("action", "action_1", "value", "logp"):
        result = maximize_activation(policy, target, obs=obs, steps=60, n_starts=6, seed=1)
        assert isinstance(result, ActivationMaximization) and result.target == target
        assert result.inputs.shape == result.starts.shape == (6, 4)
        assert result.target_values.shape == result.objective.shape == (61, 6)
        # Every run climbs, and ends above 90 % of the real observations.
        assert np.all(result.target_values[-1] > result.target_values[0]), target
        assert np.all(result.objective[-1] > result.objective[0]), target
        on_data = explain(policy, obs, "gradient", target).target_values
        assert result.target_values[-1].min() > np.percentile(on_data, 90), target
        # Inside the box, and the box inside the observation space.
        assert np.all(result.inputs >= result.low) and np.all(result.inputs <= result.high)
        assert all(space.contains(row) for row in result.inputs)
        # Starting points are rows of obs ("samples").
        assert all(np.any(np.all(obs == start, axis=1)) for start in result.starts)
        # Row 0 is the target at the starts as explain() computes it.
        np.testing.assert_allclose(
            result.target_values[0],
            explain(policy, result.starts, "gradient", target).target_values,
            atol=1e-5,
        )
    # Per-sample choice fixed at the starts: the final values are the logit of the
    # action that was greedy at each start, read from the policy's own forward pass.
    result = maximize_activation(policy, "action", obs=obs, steps=60, n_starts=6, seed=1)
    column = np.argmax(policy_logits(policy, result.starts), axis=1)
    final = policy_logits(policy, result.inputs)[np.arange(6), column]
    np.testing.assert_allclose(result.target_values[-1], final, atol=1e-5)
    offset = result.inputs.astype(np.float64) - result.mean
    np.testing.assert_allclose(
        result.objective[-1], result.target_values[-1] - 1e-3 * (offset**2).sum(axis=1), rtol=1e-6
    )


def test_box_comes_from_space_bounds_and_data_range(trained):
    algo = trained("CartPole-v1")
    policy = algo.get_policy()
    obs = rollout_observations(algo, n=64)
    result = maximize_activation(policy, "value", obs=obs, steps=5, n_starts=2)
    space = policy.observation_space
    # Cart position and pole angle have finite bounds; the velocities are "unbounded" (float32 max).
    np.testing.assert_array_equal(result.low[[0, 2]], space.low[[0, 2]])
    np.testing.assert_array_equal(result.high[[0, 2]], space.high[[0, 2]])
    span = obs.max(0) - obs.min(0)
    np.testing.assert_allclose(result.low[[1, 3]], (obs.min(0) - 0.1 * span)[[1, 3]], rtol=1e-6)
    np.testing.assert_allclose(result.high[[1, 3]], (obs.max(0) + 0.1 * span)[[1, 3]], rtol=1e-6)
    np.testing.assert_allclose(result.mean, obs.mean(0), rtol=1e-6)

    random = maximize_activation(policy, "value", init="random", steps=30, n_starts=5, seed=3)
    np.testing.assert_array_equal(random.low[[1, 3]], [-DEFAULT_BOUND] * 2)
    np.testing.assert_array_equal(random.high[[1, 3]], [DEFAULT_BOUND] * 2)
    np.testing.assert_array_equal(random.mean, np.zeros(4))
    assert np.all(random.starts >= random.low) and np.all(random.starts <= random.high)
    assert np.all(random.inputs >= random.low) and np.all(random.inputs <= random.high)
    assert random.target_values[-1].mean() > random.target_values[0].mean()


def test_array_init_seed_and_progress(trained):
    algo = trained("CartPole-v1")
    policy = algo.get_policy()
    obs = rollout_observations(algo, n=32)
    steps_seen = []
    result = maximize_activation(
        policy, "action_0", init=obs[:3], obs=obs, steps=7, n_starts=99, progress=steps_seen.append
    )
    np.testing.assert_array_equal(result.starts, obs[:3])
    assert result.inputs.shape == (3, 4) and result.options["init"] == "array"
    assert steps_seen == list(range(1, 8))
    again = maximize_activation(policy, "action_0", obs=obs, steps=10, seed=5)
    np.testing.assert_array_equal(
        again.inputs, maximize_activation(policy, "action_0", obs=obs, steps=10, seed=5).inputs
    )


@pytest.mark.skipif(FRAMEWORK != "tf", reason="graph-mode invariant: eager policies have no graph")
def test_graph_mode_adds_no_ops_to_the_policy_graph(trained, image_policy):
    for policy, obs in (
        (trained("CartPole-v1").get_policy(), rollout_observations(trained("CartPole-v1"), n=32)),
        (image_policy, image_observations(16)),
    ):
        graph = policy.get_session().graph
        before = len(graph.get_operations())
        for target in ("action", "action_1", "logp", "value"):
            maximize_activation(policy, target, obs=obs, steps=20, n_starts=4)
            maximize_activation(policy, target, init="random", steps=3, n_starts=2)
        assert len(graph.get_operations()) == before
        policy.compute_actions(obs, explore=False)
        assert len(graph.get_operations()) == before


def test_image_policy_within_bounds_and_total_variation(image_policy):
    obs = image_observations(64)
    space = image_policy.observation_space
    plain = maximize_activation(image_policy, "action_1", init="random", steps=80, n_starts=4, seed=2)
    smooth = maximize_activation(
        image_policy, "action_1", init="random", steps=80, n_starts=4, seed=2, tv=0.05
    )
    for result in (plain, smooth):
        assert result.inputs.shape == (4, 10, 10, 1)
        assert result.target_values[-1].mean() > result.target_values[0].mean()
        assert np.all(result.inputs >= 0.0) and np.all(result.inputs <= 1.0)
        assert all(space.contains(row) for row in result.inputs)
    np.testing.assert_array_equal(plain.starts, smooth.starts)
    assert _total_variation(smooth.inputs)[0].mean() < 0.7 * _total_variation(plain.inputs)[0].mean()
    # From data samples, with the L2 pull toward the data mean.
    samples = maximize_activation(image_policy, "value", obs=obs, steps=60, n_starts=4, tv=0.01)
    assert samples.target_values[-1].mean() > samples.target_values[0].mean()
    np.testing.assert_allclose(samples.mean, obs.mean(0), rtol=1e-6)


def test_recurrent_policy_one_step_from_the_initial_state(ray_cluster):
    algo = ppo_config(model={"use_lstm": True, "lstm_cell_size": 8, "max_seq_len": 8}).build_algo()
    try:
        algo.train()
        policy = algo.get_policy()
        obs = algo.env_runner.sample().as_multi_agent().policy_batches["default_policy"]["obs"][:32]
        result = maximize_activation(policy, "action", obs=obs, steps=40, n_starts=4)
        assert np.all(result.target_values[-1] > result.target_values[0])
        # Row 0 is explain() at the starts, which also uses the initial state by default.
        np.testing.assert_allclose(
            result.target_values[0],
            explain(policy, result.starts, "gradient", "action").target_values,
            atol=1e-5,
        )
        assert all(policy.observation_space.contains(row) for row in result.inputs)
    finally:
        algo.stop()


def test_total_variation_gradient_matches_finite_differences():
    x = np.random.default_rng(0).uniform(size=(2, 4, 5, 2))
    value, gradient = _total_variation(x)
    eps = 1e-6
    for index in [(0, 0, 0, 0), (1, 2, 3, 1), (0, 3, 4, 0), (1, 1, 0, 1)]:
        step = np.zeros_like(x)
        step[index] = eps
        numeric = (_total_variation(x + step)[0] - _total_variation(x - step)[0]) / (2 * eps)
        assert abs(numeric[index[0]] - gradient[index]) < 1e-5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": 0}, "steps must be a positive integer"),
        ({"n_starts": -1}, "n_starts must be a positive integer"),
        ({"lr": 0.0}, "lr must be a positive finite number"),
        ({"l2": -1.0}, "l2 must be a non-negative"),
        ({"tv": 0.1}, r"tv \(total variation\) applies to image observations"),
        ({"init": "zeros"}, "init must be 'samples', 'random' or an array"),
        ({"init": np.zeros((2, 3))}, r"init as an array must hold starting points of shape \(n, 4\)"),
        ({"obs": None}, "init='samples' draws the starting points from obs: pass obs="),
        ({"obs": np.zeros((5, 3))}, r"obs must have shape \(N, 4\)"),
        ({"obs": np.full((2, 4), np.nan)}, "obs has no finite row"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"target": "action_7"}, "out of range"),
    ],
)
def test_bad_arguments_name_the_parameter(trained, kwargs, message):
    policy = trained("CartPole-v1").get_policy()
    arguments = {"target": "action", "obs": np.zeros((4, 4), np.float32), **kwargs}
    with pytest.raises(ValueError, match=message):
        maximize_activation(policy, arguments.pop("target"), **arguments)


def test_unsupported_policy_is_a_type_error():
    with pytest.raises(TypeError, match="old API stack"):
        maximize_activation(object(), "action", init="random")
