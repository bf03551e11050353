"""Issue 20: the torch path's host side and its batched passes, on RLlib's default PPO modules.

- Host memory per explain() call on an Atari-shaped batch, measured with ``tracemalloc`` (numpy's
  allocations; torch's own CPU tensors are not traced, which is why the gradient handed back
  without a copy costs nothing here): the batch is not copied, compared or re-filled on the host.
- Batched Integrated Gradients and SmoothGrad (many points per pass, built on the device) give the
  numbers of the method's own per-step numpy loop, which the TF backends run.
- The default batch_size: one pass where it fits, and the same SmoothGrad noise as the former
  default of 1,024 rows per pass.
"""

from __future__ import annotations

# isort: off
import rllib_saliency  # noqa: F401  (first: a safe TF/torch import order for RLlib's new stack)

# isort: on
import tracemalloc

import gymnasium as gym
import numpy as np
import pytest
import torch

from rllib_saliency import explain
from rllib_saliency.backends import backend_for
from rllib_saliency.backends.base import finite_rows

# An Atari-shaped module as in the measurements: conv 16/32/64/128, 256-unit heads.
CNN = {
    "conv_filters": [[16, [8, 8], 4], [32, [4, 4], 2], [64, [3, 3], 2], [128, [3, 3], 1]],
    "head_fcnet_hiddens": [256],
}


def ppo_module(shape: tuple[int, ...], actions: int = 6, **model_config):
    from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    torch.manual_seed(0)
    return RLModuleSpec(
        module_class=DefaultPPOTorchRLModule,
        observation_space=gym.spaces.Box(0.0, 1.0, shape, np.float32),
        action_space=gym.spaces.Discrete(actions),
        model_config=DefaultModelConfig(**model_config),
    ).build()


@pytest.fixture(scope="module")
def cnn():
    return ppo_module((84, 84, 4), **CNN)


@pytest.fixture(scope="module")
def mlp():
    return ppo_module((4,), 2)


def frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, size=(n, 84, 84, 4)).astype(np.float32)


def host_peak(call) -> int:
    """Peak bytes numpy/Python allocated during ``call()`` (tracemalloc)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("target", ["action", "value", "logp"])
def test_one_explain_call_makes_no_batch_sized_host_copy(cnn, target):
    obs = frames(128)
    before = obs.copy()
    explain(cnn, obs, "gradient", target)  # warm-up: backends, probes, lazy imports
    peak = host_peak(lambda: explain(cnn, obs, "gradient", target))
    # Before issue 20 this was 4-5x the batch (a float32 copy, the finite rows' copy, the
    # NaN-filled result, the kept pass's copy and the gradient's astype copy).
    assert peak <= 2 * obs.nbytes, f"{peak / obs.nbytes:.2f}x the batch"
    np.testing.assert_array_equal(obs, before)  # the caller's batch is read, never written
    # gradient x input: its product is the one batch-sized result numpy allocates
    peak = host_peak(lambda: explain(cnn, obs, "gradient_x_input", target))
    assert peak <= 2 * obs.nbytes, f"{peak / obs.nbytes:.2f}x the batch"


def test_results_never_alias_the_callers_batch(cnn):
    obs = frames(4)
    attribution = explain(cnn, obs, "gradient")
    assert attribution.observations is obs  # float32 in: the caller's own array, not a copy
    assert not np.may_share_memory(attribution.values, obs)
    as_float64 = explain(cnn, obs.astype(np.float64), "gradient")
    np.testing.assert_array_equal(as_float64.values, attribution.values)


def test_finite_rows_on_the_host_and_on_the_device(mlp):
    obs = np.ones((6, 4), np.float32)
    obs[1, 2] = np.nan
    obs[2] = 3e38  # finite numbers whose float32 sum overflows
    obs[3, 0], obs[3, 1] = np.inf, -np.inf  # a sum of nan
    obs[4, 3] = -np.inf
    expected = [True, False, True, False, False, True]
    assert finite_rows(obs).tolist() == expected
    attribution = explain(mlp, obs, "gradient", "value")
    assert attribution.finite.tolist() == expected
    assert np.isnan(attribution.values[[1, 3, 4]]).all()
    assert np.isfinite(attribution.values[[0, 2, 5]]).all()
    np.testing.assert_allclose(  # the finite rows as if explained alone
        attribution.values[[0, 2, 5]], explain(mlp, obs[[0, 2, 5]], "gradient", "value").values
    )


class Unbatched:
    """The same torch backend without its batched methods: the methods then run their own numpy
    loops, one pass per step or noise sample (what the TF backends do)."""

    def __init__(self, backend) -> None:
        self._backend = backend

    def __getattr__(self, name: str):
        if name in ("integrated_gradients", "smoothgrad"):
            raise AttributeError(name)
        return getattr(self._backend, name)


@pytest.mark.parametrize("target", ["action", "value", "logp"])
def test_batched_passes_give_the_per_step_loops_numbers(cnn, target):
    obs = frames(6, seed=1)
    backend = backend_for(cnn)
    for method, options in (
        ("integrated_gradients", {"steps": 8}),
        ("integrated_gradients", {"steps": 3, "baseline": "mean"}),
        ("smoothgrad", {"n_samples": 4, "seed": 2}),
    ):
        batched = explain(cnn, obs, method, target, **options)
        looped = explain(cnn, obs, method, target, backend=Unbatched(backend), **options)
        scale = np.abs(looped.values).max()
        assert scale > 0
        np.testing.assert_allclose(batched.values, looped.values, rtol=1e-4, atol=1e-5 * scale)
        np.testing.assert_allclose(batched.target_values, looped.target_values, rtol=1e-6, atol=1e-6)
        if method == "integrated_gradients":
            np.testing.assert_allclose(batched.delta, looped.delta, atol=1e-4)


def test_integrated_gradients_steps_go_through_in_few_passes(mlp):
    calls = []
    hook = mlp.pi.register_forward_hook(lambda *args: calls.append(args[1][0].shape[0]))
    try:
        explain(mlp, np.zeros((16, 4), np.float32), "integrated_gradients", "action", steps=32)
    finally:
        hook.remove()
    # the greedy pass (16 rows, which also gives f(x)), all 32 steps in one pass, f(baseline): one
    # row (the same baseline for every row), each row's target read from its outputs
    assert calls == [16, 512, 1]


def test_default_batch_size_is_one_pass_where_it_fits_and_keeps_smoothgrads_noise(mlp):
    obs = np.random.default_rng(3).normal(size=(3000, 4)).astype(np.float32)
    calls = []
    hook = mlp.vf.register_forward_hook(lambda *args: calls.append(args[1][0].shape[0]))
    try:
        explain(mlp, obs, "gradient", "value")
        assert calls[-1] == 3000 and len(calls) <= 3  # (the first call measures a row: 1 and 2 rows)
        calls.clear()
        explain(mlp, obs, "gradient", "value")
        assert calls == [3000]  # one pass, not three of 1,024 rows
        chunked = explain(mlp, obs, "gradient", "value", batch_size=1024)
        assert calls[1:] == [1024, 1024, 952]
    finally:
        hook.remove()
    default = explain(mlp, obs, "gradient", "value")
    np.testing.assert_allclose(default.values, chunked.values, rtol=1e-5, atol=1e-7)
    # SmoothGrad's noise is drawn per 1,024 rows whatever the pass size: the former default's.
    smooth = explain(mlp, obs, "smoothgrad", "value", n_samples=3, seed=5)
    former = explain(mlp, obs, "smoothgrad", "value", n_samples=3, seed=5, batch_size=1024)
    np.testing.assert_allclose(smooth.values, former.values, rtol=1e-5, atol=1e-7)
    other = explain(mlp, obs, "smoothgrad", "value", n_samples=3, seed=5, batch_size=1000)
    assert not np.allclose(other.values, former.values)  # (so the check above can fail)


def test_the_pass_size_rule_follows_the_memory_a_row_needs(cnn, mlp):
    small, large = backend_for(mlp), backend_for(cnn)
    assert small.pass_rows(100, (4,), False) == 1024  # up to 1,024 rows: one pass, always
    assert large._bytes_per_row((84, 84, 4), False) > 50 * small._bytes_per_row((4,), False)
    # The row's own memory is counted: at least the row, its gradient and its staged copy.
    assert large._bytes_per_row((84, 84, 4), True) >= 3 * 84 * 84 * 4 * 4
    assert small.pass_rows(10**6, (4,), False) >= 1024


def test_the_submodule_walk_is_module_modules(cnn, mlp):
    from rllib_saliency.backends.torch import parameters_of, submodules

    shared = torch.nn.Linear(2, 2)  # a submodule and a parameter reachable twice: listed once
    nested = torch.nn.Sequential(shared, torch.nn.Sequential(shared, torch.nn.ReLU()), torch.nn.Tanh())
    for module in (cnn, mlp, nested):
        assert submodules(module) == list(module.modules())
        assert parameters_of(submodules(module)) == list(module.parameters())


class CubicValue(torch.nn.Module):
    """value(x) = sum_j c_j x_j^3: its gradient 3 c x^2 is not linear, so SmoothGrad's expectation,
    E[3 c (x + e)^2] = 3 c (x^2 + sigma^2), shows the noise's mean and variance."""

    def __init__(self, c: np.ndarray) -> None:
        super().__init__()
        self.c = torch.nn.Parameter(torch.as_tensor(c, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.c * x**3).sum(dim=1)


def cubic_value_module(c: np.ndarray):
    from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule

    module = ppo_module((3,), 2)
    cubic = CubicValue(c)
    # The value head replaced: compute_values is the cubic (the actor half stays RLlib's).
    module.compute_values = lambda batch, embeddings=None: cubic(batch["obs"])
    assert isinstance(module, DefaultPPOTorchRLModule)
    return module


@pytest.mark.parametrize("noise_source", ["host", "device"])
def test_smoothgrad_noise_has_the_documented_mean_and_spread(noise_source):
    """Either source: SmoothGrad of a cubic equals its closed form 3 c (x^2 + sigma^2), sigma =
    noise_level × each feature's range in the batch, within the Monte Carlo error."""
    c = np.array([1.0, -2.0, 0.5])
    module = cubic_value_module(c)
    x = np.array([[0.5, -1.0, 2.0], [-0.5, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    sigma = 0.2 * (x.max(axis=0) - x.min(axis=0))
    n = 20000
    options = {"n_samples": n, "noise_level": 0.2, "noise_source": noise_source}
    smooth = explain(module, x, "smoothgrad", "value", **options)
    expected = 3 * c * (x.astype(np.float64) ** 2 + sigma**2)
    # The mean of 3 c (2 x e + e^2) over n draws: standard error 3 |c| sqrt(4 x^2 s^2 + 2 s^4) / sqrt(n).
    error = 3 * np.abs(c) * np.sqrt(4 * x.astype(np.float64) ** 2 * sigma**2 + 2 * sigma**4) / np.sqrt(n)
    assert np.all(np.abs(smooth.values - expected) <= 5 * error + 1e-5), (smooth.values, expected, error)
    assert not np.allclose(smooth.values, 3 * c * x**2, atol=0.05)  # the sigma^2 term is there


def test_device_noise_is_reproducible_and_not_the_hosts(cnn, mlp):
    obs = frames(4, seed=2)
    first = explain(cnn, obs, "smoothgrad", "action", n_samples=3, seed=7, noise_source="device")
    again = explain(cnn, obs, "smoothgrad", "action", n_samples=3, seed=7, noise_source="device")
    np.testing.assert_array_equal(first.values, again.values)
    other_seed = explain(cnn, obs, "smoothgrad", "action", n_samples=3, seed=8, noise_source="device")
    on_host = explain(cnn, obs, "smoothgrad", "action", n_samples=3, seed=7)
    assert not np.allclose(first.values, other_seed.values) and not np.allclose(first.values, on_host.values)
    # As the host's: drawn per 1,024 rows whatever the pass size, so a smaller pass (batch_size=1024 makes
    # passes of 1,024 rows, the default one of 3,000) gives the same noise.
    rows = np.random.default_rng(3).normal(size=(3000, 4)).astype(np.float32)
    options = {"n_samples": 3, "seed": 5, "noise_source": "device"}
    whole = explain(mlp, rows, "smoothgrad", "value", **options)
    chunked = explain(mlp, rows, "smoothgrad", "value", batch_size=1024, **options)
    np.testing.assert_allclose(whole.values, chunked.values, rtol=1e-5, atol=1e-7)
    # The noise never comes from numpy: no observation-sized host allocation per sample (the
    # host's draws allocate 3 batches' worth each: float64, then float32; measured 3.1× and 0.25×).
    batch = frames(32)
    options = {"n_samples": 8}
    peaks = {
        source: host_peak(lambda: explain(cnn, batch, "smoothgrad", "value", noise_source=source, **options))  # noqa: B023
        / batch.nbytes
        for source in ("device", "host")
    }
    assert peaks["device"] < 0.5 and peaks["host"] > 2.5, peaks


def test_plot_of_image_observations_shows_the_first_frames(cnn):
    """``plot`` of an Atari-shaped attribution: one row per frame (overlay, heatmap), at most
    ``max_images``, the heatmap that frame's mean |attribution| over channels."""
    from rllib_saliency import plot

    attribution = explain(cnn, frames(5), "gradient", "action")
    figure = plot(attribution, max_images=3)
    assert len(figure.axes) == 3 * 2
    heat = np.abs(attribution.values[1].astype(np.float64)).mean(axis=-1)
    shown = np.asarray(figure.axes[3].images[0].get_array())[..., :3]  # row 1's heatmap, RGB
    from matplotlib import colormaps

    np.testing.assert_allclose(shown, colormaps["inferno"](heat / heat.max())[..., :3], atol=1e-6)
    assert len(plot(attribution, frame_maps=True, max_images=1).axes) == 2 + 4  # and its 4 frames
    with pytest.raises(ValueError, match="max_images must be a positive integer"):
        plot(attribution, max_images=0)
