"""explain() and the trust metrics on torch RLModules of RLlib's new API stack: the new stack's own
engine tests.

Real new-stack PPO (the session's ``trained(env)``: one training iteration) on CartPole-v1 (Discrete
actions) and Pendulum-v1 (Box actions); gradients are checked against central finite differences on
a float64 copy of the module (through the module's own outputs, tests/reference_outputs.py), to
float64 precision. A hand-built linear module checks the closed forms. The contracts both stacks
keep (float32 finite differences, target values, IG completeness, occlusion, gradient×input,
SmoothGrad) are in tests/contracts/test_engine_contracts.py.
"""

from __future__ import annotations

# isort: off
import rllib_saliency  # noqa: F401  (first: a safe TF/torch import order for RLlib's new stack)

# isort: on
import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import learner_module
from envs import env_observations
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import ValueFunctionAPI
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule
from reference_outputs import check_action_follows_the_greedy_action, finite_differences, outputs_of

from rllib_saliency import explain, maximize_activation
from rllib_saliency.trust import deletion_auc, randomization_rank_corr, rank_agreement

ENVS = ["CartPole-v1", "Pendulum-v1"]
TARGETS = ["action", "action_0", "logp", "value"]


# --- gradients and target values on trained modules ----------------------------------------------


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("target", TARGETS)
def test_gradient_matches_central_finite_differences_in_float64(trained, env, target):
    module = learner_module(trained(env))
    exact = copy.deepcopy(module).double()
    obs = env_observations(env, 16)
    numeric = finite_differences(outputs_of(exact), obs, target, eps=1e-6, dtype=np.float64)
    assert np.abs(numeric).max() > 1e-3, "finite differences are ~0: the check would be vacuous"
    # The float64 copy through explain(): only float32 rounding of the result is left.
    np.testing.assert_allclose(explain(exact, obs, "gradient", target).values, numeric, rtol=1e-5, atol=1e-8)
    # The float32 module itself: float32 round-off in forward and backward passes.
    np.testing.assert_allclose(explain(module, obs, "gradient", target).values, numeric, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("env", ENVS)
def test_logp_gradient_of_given_actions_matches_finite_differences(trained, env):
    module = learner_module(trained(env))
    exact = copy.deepcopy(module).double()
    obs = env_observations(env, 16)
    space = module.action_space
    space.seed(1)
    actions = np.stack([space.sample() for _ in obs]).astype(space.dtype)
    numeric = finite_differences(
        outputs_of(exact), obs, "logp", eps=1e-6, dtype=np.float64, actions=actions
    )
    assert np.abs(numeric).max() > 1e-3
    attribution = explain(exact, obs, "gradient", "logp", actions=actions)
    np.testing.assert_allclose(attribution.values, numeric, rtol=1e-5, atol=1e-8)
    expected = outputs_of(exact).logp(obs, actions)
    np.testing.assert_allclose(attribution.target_values, expected, rtol=1e-6, atol=1e-6)


def balanced_copy(trained) -> tuple:
    """A copy of the trained CartPole learner module whose last bias is shifted so that each action
    is greedy in about half of 64 env observations (after one iteration one action may win
    everywhere), and those observations."""
    module = copy.deepcopy(learner_module(trained("CartPole-v1")))
    obs = env_observations("CartPole-v1", 64)
    dist_inputs = outputs_of(module).dist_inputs(obs)
    last = [m for m in module.pi.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.bias[0] += float(np.median(dist_inputs[:, 1] - dist_inputs[:, 0]))
    return module, obs


def test_the_action_target_follows_the_greedy_action_in_every_row(trained):
    """The greedy action's logit, row by row (the trained module's own rows are a contract,
    tests/contracts/test_engine_contracts.py); here on a copy where each action wins in about
    half the rows."""
    module, obs = balanced_copy(trained)
    logits = outputs_of(module).dist_inputs(obs)
    assert 0.2 < np.mean(np.argmax(logits, axis=1)) < 0.8, "both actions should be greedy somewhere"
    check_action_follows_the_greedy_action(module, obs, logits)


@pytest.mark.parametrize("env", ENVS)
def test_env_runner_module_gives_the_learners_action_gradients_but_no_value(trained, env):
    algo = trained(env)
    runner_module, full = algo.get_module(), learner_module(algo)
    assert runner_module.inference_only and not full.inference_only
    obs = env_observations(env, 32)
    for target in ("action", "action_0", "logp"):
        ours = explain(runner_module, obs, "gradient", target)
        theirs = explain(full, obs, "gradient", target)
        np.testing.assert_allclose(ours.values, theirs.values, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(ours.target_values, theirs.target_values, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match=r"SingleAgentEnvRunner 0's copy.*explain\(algo, obs"):
        explain(runner_module, obs, "gradient", "value")
    # A copy no env runner holds (e.g. pickled out of one): refused by its flags, with what it is.
    with pytest.raises(ValueError, match=r"\(Default\w+\) is inference-only.*learner_module\(algo\)"):
        explain(copy.deepcopy(runner_module), obs, "gradient", "value")


# --- explaining leaves the module as it was -------------------------------------------------------


def _snapshot(module) -> dict:
    return {
        "grads": {
            n: (p.grad, None if p.grad is None else p.grad.clone()) for n, p in module.named_parameters()
        },
        "requires_grad": {n: p.requires_grad for n, p in module.named_parameters()},
        "training": {n: m.training for n, m in module.named_modules()},
        "params": {n: p.detach().clone() for n, p in module.named_parameters()},
    }


@pytest.mark.parametrize("mode", ["train", "eval", "mixed"])
def test_explaining_leaves_the_module_untouched(trained, mode):
    original = learner_module(trained("CartPole-v1"))
    module = copy.deepcopy(original)  # (a Parameter's deepcopy leaves out its .grad)
    for (name, parameter), trained_parameter in zip(
        module.named_parameters(), original.parameters(), strict=True
    ):
        assert trained_parameter.grad is not None, f"training should have left {name}.grad set"
        parameter.grad = trained_parameter.grad.clone()
    names = [n for n, _ in module.named_parameters()]
    dict(module.named_parameters())[names[0]].grad = None  # some None, some tensors
    dict(module.named_parameters())[names[1]].requires_grad_(False)  # a frozen parameter
    if mode == "train":
        module.train()
    elif mode == "eval":
        module.eval()
    else:  # per-submodule flags, not just the top-level one
        module.train()
        module.pi.eval()
    before = _snapshot(module)
    obs = env_observations("CartPole-v1", 16)
    methods = {
        "gradient": {},
        "gradient_x_input": {},
        "smoothgrad": {"n_samples": 2},
        "integrated_gradients": {"steps": 3},
        "occlusion": {},
    }
    for method, options in methods.items():
        for target in TARGETS:
            explain(module, obs, method, target, **options)
    maximize_activation(module, "value", obs=obs, steps=2, n_starts=2)
    after = _snapshot(module)
    for name, (grad, values) in before["grads"].items():
        grad_after, values_after = after["grads"][name]
        assert grad_after is grad, name
        if values is None:
            assert values_after is None, name
        else:
            torch.testing.assert_close(values_after, values, rtol=0, atol=0)
    assert after["requires_grad"] == before["requires_grad"]
    assert after["training"] == before["training"]
    for name, value in before["params"].items():
        torch.testing.assert_close(after["params"][name], value, rtol=0, atol=0)


# --- the greedy pass is reused, never stale ------------------------------------------------------


def test_the_greedy_actions_pass_is_differentiated_not_rerun(trained):
    module = copy.deepcopy(learner_module(trained("CartPole-v1")))
    calls = []
    module.pi.register_forward_hook(lambda *args: calls.append(1))
    obs = env_observations("CartPole-v1", 16)
    for target in ("action", "logp", "action_1"):
        calls.clear()
        attribution = explain(module, obs, "gradient", target)
        assert len(calls) == 1, target  # one pass: forward() resolves, evaluate() reuses it
        calls.clear()
        chunked = explain(module, obs, "gradient", target, batch_size=5)
        assert len(calls) == 4, target  # one pass per chunk (5, 5, 5 and 1 rows), differentiated
        for name in ("columns", "actions"):  # the same choices, resolved chunk by chunk
            whole, parts = getattr(attribution.resolved, name), getattr(chunked.resolved, name)
            assert (whole is None) == (parts is None) and (whole is None or np.array_equal(whole, parts))
        # (other batch shapes: float32 sums in another order)
        np.testing.assert_allclose(chunked.values, attribution.values, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(chunked.target_values, attribution.target_values, rtol=1e-5, atol=1e-6)


def test_a_kept_pass_is_not_used_after_the_weights_or_observations_change(trained):
    from rllib_saliency.backends import backend_for
    from rllib_saliency.targets import ResolvedTarget

    module = copy.deepcopy(learner_module(trained("CartPole-v1")))
    backend = backend_for(module)
    obs = env_observations("CartPole-v1", 8)
    column_1 = ResolvedTarget("dist_input", columns=np.ones(len(obs), np.int32))
    last = [m for m in module.pi.modules() if isinstance(m, torch.nn.Linear)][-1]

    backend.forward(obs)
    with torch.no_grad():
        last.bias.add_(1.0)  # an in-place update (an optimizer step, load_state_dict)
    values, _ = backend.evaluate(obs, column_1, with_gradient=True)
    np.testing.assert_allclose(values, outputs_of(module).dist_inputs(obs)[:, 1], rtol=1e-6, atol=1e-6)

    backend.forward(obs)
    with torch.no_grad():  # a new parameter object
        last.bias = torch.nn.Parameter(last.bias + 1.0)
    values, _ = backend.evaluate(obs, column_1, with_gradient=False)
    np.testing.assert_allclose(values, outputs_of(module).dist_inputs(obs)[:, 1], rtol=1e-6, atol=1e-6)

    backend.forward(obs)
    reversed_obs = obs[::-1]  # other observations (a view with a negative stride, too)
    values, gradient = backend.evaluate(reversed_obs, column_1, with_gradient=True)
    expected = outputs_of(module).dist_inputs(reversed_obs)[:, 1]
    np.testing.assert_allclose(values, expected, rtol=1e-6, atol=1e-6)
    fresh = explain(copy.deepcopy(module), reversed_obs, "gradient", "action_1").values
    np.testing.assert_allclose(gradient, fresh, rtol=1e-6, atol=1e-8)


class MultiDiscreteModule(TorchRLModule):
    """Logits of two sub-actions (3 and 4 choices) from one linear layer; the second sub-action's
    logits tie in every row (its weights and biases are zero)."""

    def setup(self):
        self.pi = torch.nn.Linear(self.observation_space.shape[0], 7)
        with torch.no_grad():
            self.pi.weight[3:] = 0.0
            self.pi.bias[3:] = 0.0

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.pi(batch[Columns.OBS])}


def test_greedy_columns_found_on_the_device_are_the_engines_choice(trained):
    """Target "action" resolved by the backend's resolve_greedy (on the module's device) gives the
    choices the engine makes from the outputs (forward + resolve_target), ties to the first column;
    an evaluate of another target after it does not use its columns."""
    from rllib_saliency.backends import backend_for
    from rllib_saliency.targets import ResolvedTarget, parse_target, resolve_target

    module, obs = balanced_copy(trained)
    backend = backend_for(module)
    spec = parse_target("action", module.action_space)
    outputs = backend.forward(obs)
    expected = resolve_target(spec, len(obs), outputs.dist_inputs, outputs.greedy_actions, None)
    resolved = backend.resolve_greedy(spec, obs, ())
    assert resolved.columns.dtype == expected.columns.dtype == np.int32
    np.testing.assert_array_equal(resolved.columns, expected.columns)
    assert 0.2 < resolved.columns.mean() < 0.8  # both actions are greedy somewhere: the check can fail
    other = 1 - resolved.columns
    values, _ = backend.evaluate(obs, ResolvedTarget("dist_input", columns=other), False)
    np.testing.assert_allclose(values, outputs.dist_inputs[np.arange(len(obs)), other], rtol=1e-6)

    torch.manual_seed(0)
    space = gym.spaces.MultiDiscrete([3, 4])
    multi = MultiDiscreteModule(observation_space=gym.spaces.Box(-1, 1, (5,), np.float32), action_space=space)
    x = np.random.default_rng(0).uniform(-1, 1, (64, 5)).astype(np.float32)
    with torch.no_grad():
        logits = multi.pi(torch.as_tensor(x)).numpy()
    for name, first, size in (("action", 0, 3), ("action_1", 3, 4)):
        attribution = explain(multi, x, "gradient", name)
        columns = first + np.argmax(logits[:, first : first + size], axis=1)
        np.testing.assert_array_equal(attribution.resolved.columns, columns, err_msg=name)
        np.testing.assert_allclose(attribution.target_values, logits[np.arange(64), columns], rtol=1e-6)
        weights = multi.pi.weight.detach().numpy()[columns]  # d logit_c / dx = W[c]
        np.testing.assert_allclose(attribution.values, weights, rtol=1e-6, err_msg=name)
    assert len(set(np.argmax(logits[:, :3], axis=1))) > 1  # sub-action 0: more than one greedy column
    # Sub-action 1's four logits tie in every row: the first of them, as numpy's argmax.
    assert set(explain(multi, x, "gradient", "action_1").resolved.columns) == {3}


# --- a user's own modules ---------------------------------------------------------------------------


class LinearModule(TorchRLModule, ValueFunctionAPI):
    """logits = W x + b, value = v·x + c; dropout on the input (identity in eval mode)."""

    def setup(self):
        size = self.observation_space.shape[0]
        self.dropout = torch.nn.Dropout(0.5)
        self.pi = torch.nn.Linear(size, self.action_space.n)
        self.vf = torch.nn.Linear(size, 1)

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.pi(self.dropout(batch[Columns.OBS]))}

    def compute_values(self, batch, embeddings=None):
        return self.vf(self.dropout(batch[Columns.OBS])).squeeze(-1)


def linear_module(cls=LinearModule):
    return cls(
        observation_space=gym.spaces.Box(-np.inf, np.inf, (5,), np.float32),
        action_space=gym.spaces.Discrete(3),
    )


def test_a_users_own_module_against_its_closed_form():
    rng = np.random.default_rng(0)
    module = linear_module()
    w, b = rng.normal(size=(3, 5)), rng.normal(size=3)
    v, c = rng.normal(size=5), 0.3
    with torch.no_grad():
        module.pi.weight.copy_(torch.as_tensor(w))
        module.pi.bias.copy_(torch.as_tensor(b))
        module.vf.weight.copy_(torch.as_tensor(v[None]))
        module.vf.bias.fill_(c)
    module.train()  # dropout active: explain() must run in eval mode and restore this
    x = rng.normal(size=(10, 5)).astype(np.float32)
    logits = x.astype(np.float64) @ w.T + b
    greedy = np.argmax(logits, axis=1)
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)

    action = explain(module, x, "gradient", "action")
    np.testing.assert_allclose(action.values, w[greedy], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(action.target_values, logits.max(axis=1), rtol=1e-5, atol=1e-5)
    action_2 = explain(module, x, "gradient", "action_2")
    np.testing.assert_allclose(action_2.values, np.tile(w[2], (10, 1)), rtol=1e-6)
    value = explain(module, x, "gradient", "value")
    np.testing.assert_allclose(value.values, np.tile(v, (10, 1)), rtol=1e-6)
    np.testing.assert_allclose(value.target_values, x @ v + c, rtol=1e-5, atol=1e-5)
    # d log softmax(Wx + b)[a] / dx = W[a] - Σ_k p_k W[k]
    actions = rng.integers(0, 3, size=10)
    logp = explain(module, x, "gradient", "logp", actions=actions)
    np.testing.assert_allclose(logp.values, w[actions] - probabilities @ w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logp.target_values, np.log(probabilities[np.arange(10), actions]), rtol=1e-5)
    # Linear target, zero baseline: Integrated Gradients is exactly gradient × input.
    ig = explain(module, x, "integrated_gradients", "value", steps=2)
    np.testing.assert_allclose(ig.values, v * x, rtol=1e-5, atol=1e-6)
    assert np.abs(ig.delta).max() < 1e-5
    assert module.training and module.dropout.training


class ConstantValueModule(LinearModule):
    """A value that depends on a parameter but not on the observation."""

    def compute_values(self, batch, embeddings=None):
        return self.vf.bias.expand(len(batch[Columns.OBS]))


def test_a_target_that_ignores_the_observation_has_zero_gradient():
    module = linear_module(ConstantValueModule)
    with torch.no_grad():
        module.vf.bias.fill_(0.7)
    x = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    for method in ("gradient", "integrated_gradients", "smoothgrad"):
        attribution = explain(module, x, method, "value")
        np.testing.assert_array_equal(attribution.values, np.zeros_like(x))
        np.testing.assert_allclose(attribution.target_values, 0.7, rtol=1e-6)


def test_the_callers_grad_mode_does_not_matter(trained):
    module = learner_module(trained("CartPole-v1"))
    obs = env_observations("CartPole-v1", 16)
    expected = explain(module, obs, "gradient", "logp")
    for mode in (torch.no_grad, torch.inference_mode):
        with mode():
            got = explain(module, obs, "gradient", "logp")
        np.testing.assert_array_equal(got.values, expected.values)
        np.testing.assert_array_equal(got.target_values, expected.target_values)
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


def test_a_module_is_not_kept_alive_by_explaining_it():
    import gc
    import weakref

    module = linear_module()
    explain(module, np.zeros((2, 5), np.float32), "gradient", "value")
    alive = weakref.ref(module)
    del module
    gc.collect()
    assert alive() is None


class NoGradInferenceModule(TorchRLModule):
    """Overrides _forward_inference under no_grad and has no _forward: nothing to differentiate."""

    def setup(self):
        self.pi = torch.nn.Linear(self.observation_space.shape[0], self.action_space.n)

    def _forward_inference(self, batch, **kwargs):
        with torch.no_grad():
            return {Columns.ACTION_DIST_INPUTS: self.pi(batch[Columns.OBS])}


def test_a_module_without_autograd_is_refused_clearly():
    module = NoGradInferenceModule(
        observation_space=gym.spaces.Box(-1.0, 1.0, (3,), np.float32), action_space=gym.spaces.Discrete(2)
    )
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(TypeError, match=r"_forward_inference runs without autograd.*_forward"):
        explain(module, x, "gradient", "action")
    # Gradient-free methods still work: occlusion only evaluates the module.
    assert explain(module, x, "occlusion", "action_1").values.shape == (4, 3)


def test_multi_module_is_refused(trained):
    multi = trained("CartPole-v1").learner_group._learner.module
    obs = env_observations("CartPole-v1", 4)
    with pytest.raises(TypeError, match=r"MultiRLModule.*module\[module_id\]"):
        explain(multi, obs, "gradient", "action")


# --- trust metrics and activation maximization ---------------------------------------------------


def test_deletion_auc_beats_random_order(trained):
    module = learner_module(trained("CartPole-v1"))
    obs = env_observations("CartPole-v1", 64)
    by_map, by_chance = deletion_auc(module, explain(module, obs, "gradient_x_input", "value"))
    assert by_map.shape == by_chance.shape == (64,)
    assert np.nanmean(by_map) < np.nanmean(by_chance)


def test_randomization_touches_neither_the_module_nor_torchs_rng(trained):
    module = copy.deepcopy(learner_module(trained("CartPole-v1")))  # no cached randomised copy yet
    obs = env_observations("CartPole-v1", 64)
    gradient = explain(module, obs, "gradient", "action")
    weights = {k: v.clone() for k, v in module.state_dict().items()}
    rng_state = torch.get_rng_state()
    corr = randomization_rank_corr(module, gradient)
    assert torch.equal(torch.get_rng_state(), rng_state)
    assert corr.shape == (64,) and np.nanmean(corr) < 0.8
    for key, value in module.state_dict().items():
        torch.testing.assert_close(value, weights[key], rtol=0, atol=0)
    np.testing.assert_array_equal(explain(module, obs, "gradient", "action").values, gradient.values)
    # Same seed, same randomised copy: the same correlations.
    np.testing.assert_array_equal(randomization_rank_corr(module, gradient), corr)


def test_rank_agreement_between_methods(trained):
    module = learner_module(trained("CartPole-v1"))
    obs = env_observations("CartPole-v1", 32)
    ig = explain(module, obs, "integrated_gradients", "value")
    gxi = explain(module, obs, "gradient_x_input", "value")
    agreement = rank_agreement(ig, gxi)
    assert agreement.shape == (32,) and np.nanmean(agreement) > 0.5
    with pytest.raises(ValueError, match="same observations and target"):
        rank_agreement(ig, explain(module, obs, "gradient", "action"))


def test_maximize_activation_raises_the_target(trained):
    module = learner_module(trained("CartPole-v1"))
    obs = env_observations("CartPole-v1", 64)
    result = maximize_activation(module, "action_0", obs=obs, steps=40, n_starts=4, seed=1)
    assert result.inputs.shape == (4, 4) and result.target_values.shape == (41, 4)
    assert np.all(result.target_values[-1] > result.target_values[0])
    assert np.all(result.inputs >= result.low) and np.all(result.inputs <= result.high)
    # The reported values are the module's own outputs at the optimised inputs.
    reached = outputs_of(module).dist_inputs(result.inputs)[:, 0]
    np.testing.assert_allclose(result.target_values[-1], reached, atol=1e-5)


def test_greedy_action_equals_rllibs_deterministic_sample():
    """The Categorical shortcut (argmax of the logits) is what RLlib's own distribution gives,
    ties and large logits included; other classes go through RLlib's distribution."""
    from ray.rllib.core.distribution.torch.torch_distribution import TorchCategorical, TorchDiagGaussian

    from rllib_saliency.backends.torch import greedy_action

    rng = np.random.default_rng(3)
    logits = torch.as_tensor(rng.normal(size=(64, 5)) * 50, dtype=torch.float32)
    logits[0] = torch.tensor([1.0, 3.0, 3.0, -2.0, 0.0])  # a tie: the first maximum, as argmax
    expected = TorchCategorical.from_logits(logits).to_deterministic().sample()
    assert torch.equal(greedy_action(TorchCategorical, logits), expected)
    gaussian = torch.as_tensor(rng.normal(size=(8, 4)), dtype=torch.float32)  # 2 means, 2 log stds
    np.testing.assert_array_equal(greedy_action(TorchDiagGaussian, gaussian).numpy(), gaussian[:, :2].numpy())


class OwnTrainModule(LinearModule):
    """A module whose train() does more than set flags (as some users' modules do)."""

    def train(self, mode: bool = True):
        self.train_calls = getattr(self, "train_calls", 0) + 1
        return super().train(mode)


def test_a_module_with_its_own_train_gets_it_called_and_its_mode_restored():
    module = linear_module(OwnTrainModule)
    module.train()
    calls = module.train_calls
    explain(module, np.zeros((4, 5), np.float32), "gradient", "action")
    assert module.train_calls == calls + 1  # eval() went through the module's own train(False)
    assert module.training and module.dropout.training and module.pi.training


def ppo_module(**model_config):
    from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    return RLModuleSpec(
        module_class=DefaultPPOTorchRLModule,
        observation_space=gym.spaces.Box(-1.0, 1.0, (4,), np.float32),
        action_space=gym.spaces.Discrete(3),
        model_config=DefaultModelConfig(**model_config),
    ).build()


def bare_action_gradient(module, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The greedy logit and its input gradient through the module's whole _forward."""
    inputs = torch.as_tensor(x).requires_grad_(True)
    logits = module._forward({Columns.OBS: inputs})[Columns.ACTION_DIST_INPUTS]
    greedy = logits.gather(1, logits.argmax(dim=1, keepdim=True))[:, 0]
    (gradient,) = torch.autograd.grad(greedy.sum(), inputs)
    return greedy.detach().numpy(), gradient.numpy()


def test_default_ppo_modules_run_only_the_actor_half_for_action_targets(trained):
    """RLlib's default PPO module with separate encoders (PPO's default on the new stack): the
    backend runs pi(actor_encoder(obs)) alone; values and gradients equal those through the whole
    _forward, critic encoder included. Shared, stateful and hooked encoders take the whole pass."""
    from rllib_saliency.backends import backend_for

    x = env_observations("CartPole-v1", 64)
    learned = learner_module(trained("CartPole-v1"))
    assert backend_for(learned)._actor_path
    for module in (learned, ppo_module(vf_share_layers=False)):
        rows = x if module is learned else np.clip(x, -1, 1)
        attribution = explain(module, rows, "gradient", "action")
        target_values, gradient = bare_action_gradient(module, rows)
        np.testing.assert_allclose(attribution.values, gradient, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(attribution.target_values, target_values, rtol=1e-6, atol=1e-7)
    assert not backend_for(ppo_module(vf_share_layers=True))._actor_path
    assert not backend_for(ppo_module(vf_share_layers=False, use_lstm=True))._actor_path
    hooked = ppo_module(vf_share_layers=False)
    calls = []
    hooked.encoder.register_forward_hook(lambda *args: calls.append(1))
    assert not backend_for(hooked)._actor_path
    explain(hooked, np.zeros((2, 4), np.float32), "gradient", "action")
    assert calls  # the user's hook on the encoder ran
