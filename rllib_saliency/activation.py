"""Activation maximization: the observation that drives a policy output highest.

Gradient ascent on the *input* of a policy's model (Erhan et al. 2009; Simonyan
et al. 2014), through the same backends as :func:`~rllib_saliency.explain`: in
graph mode nothing is added to the policy's graph, in eager mode the compiled
``tf.function`` of the target is reused. The search is projected onto the
observation space's bounds, regularised toward the data, and run from several
starting points at once (one batch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rllib_saliency.backends import TargetFunction, backend_for
from rllib_saliency.backends.base import resolve_at
from rllib_saliency.engine import _check_observations
from rllib_saliency.recurrent import initial_states
from rllib_saliency.targets import concatenate_targets, needs_forward, parse_target, resolve_target

# Gymnasium writes float32's maximum for "unbounded" (e.g. CartPole's velocities):
# bounds this large are treated as no bound at all.
UNBOUNDED = 1e6
# An unbounded side is replaced by the range seen in ``obs`` widened by this
# fraction of it (so the optimum may leave the data a little, but not run off) ...
DATA_MARGIN = 0.1
# ... or, without ``obs``, by this (|bound| of a standardised-looking feature).
DEFAULT_BOUND = 10.0
# Adam (Kingma & Ba 2015) hyper-parameters.
BETA1, BETA2, EPSILON = 0.9, 0.999, 1e-8
CHUNK = 1024  # most starting points sent through the model at once
INIT_NAMES = ("samples", "random")


@dataclass(frozen=True)
class ActivationMaximization:
    """The result of :func:`maximize_activation`.

    inputs: ``(n_starts, *obs_shape)`` float32, the optimised observations
        (the last iterate of each run), inside ``[low, high]``.
    target_values: ``(steps + 1, n_starts)``, the target at every iterate
        (row 0: at the starting points, row ``steps``: at ``inputs``).
    starts: ``(n_starts, *obs_shape)``, the starting points (clipped into the bounds).
    target: the target name.
    objective: ``(steps + 1, n_starts)``, target minus the regularisers (what is maximised).
    low, high: ``obs_shape`` float32, the bounds the search was projected onto.
    mean: ``obs_shape``, the point the L2 regulariser pulls toward.
    options: the settings used (``steps``, ``lr``, ``l2``, ``tv``, ``init``, ``seed``).
    """

    inputs: np.ndarray
    target_values: np.ndarray
    starts: np.ndarray
    target: str
    objective: np.ndarray
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    mean: np.ndarray | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> int:
        """Index of the run that reached the highest target value."""
        return int(np.argmax(self.target_values[-1]))


def _positive_int(name: str, value: Any, meaning: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer ({meaning}); got {value!r}.")
    return int(value)


def _number(name: str, value: Any, meaning: str, *, positive: bool) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    if ok:
        ok = bool(np.isfinite(value)) and (value > 0 if positive else value >= 0)
    if not ok:
        kind = "a positive" if positive else "a non-negative"
        raise ValueError(f"{name} must be {kind} finite number ({meaning}); got {value!r}.")
    return float(value)


def observation_bounds(
    space: Any, data: np.ndarray | None, obs_shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """The box the search stays in: the space's bounds where they are finite.

    Where a bound is infinite (or beyond ±1e6, gymnasium's "unbounded"), the
    range of ``data`` on that feature widened by 10 % of it on each side
    (at least 0.1), or ±10 without data.
    """
    low = np.broadcast_to(np.asarray(space.low, np.float64), obs_shape).copy()
    high = np.broadcast_to(np.asarray(space.high, np.float64), obs_shape).copy()
    space_low, space_high = low.copy(), high.copy()
    open_low = ~np.isfinite(low) | (low <= -UNBOUNDED)
    open_high = ~np.isfinite(high) | (high >= UNBOUNDED)
    if data is not None:
        data_min = data.min(axis=0).astype(np.float64)
        data_max = data.max(axis=0).astype(np.float64)
        span = data_max - data_min
        margin = DATA_MARGIN * np.where(span > 0, span, 1.0)
        low = np.where(open_low, data_min - margin, low)
        high = np.where(open_high, data_max + margin, high)
    else:
        # One-sided bounds: keep the box 2 * DEFAULT_BOUND wide from the given side.
        low = np.where(open_low, np.where(open_high, -DEFAULT_BOUND, high - 2 * DEFAULT_BOUND), low)
        high = np.where(open_high, np.where(open_low, DEFAULT_BOUND, low + 2 * DEFAULT_BOUND), high)
    # Never leave the space itself (float32 rounding of data-derived bounds included).
    # (The space's bounds are float32 values, so the cast keeps the result inside them.)
    return np.maximum(low, space_low).astype(np.float32), np.minimum(high, space_high).astype(np.float32)


def _starting_points(
    init: Any,
    data: np.ndarray | None,
    n_starts: int,
    low: np.ndarray,
    high: np.ndarray,
    rng: np.random.Generator,
    obs_shape: tuple[int, ...],
) -> tuple[np.ndarray, str]:
    expected = f"(n, {', '.join(map(str, obs_shape))})"
    if isinstance(init, str):
        if init == "samples":
            if data is None:
                raise ValueError(
                    f"init='samples' draws the starting points from obs: pass obs=... (observations of "
                    f"shape (N, {', '.join(map(str, obs_shape))})) or use init='random'."
                )
            replace = len(data) < n_starts
            return data[rng.choice(len(data), n_starts, replace=replace)].astype(np.float32), init
        if init == "random":
            return rng.uniform(low, high, (n_starts, *obs_shape)).astype(np.float32), init
        raise ValueError(
            f"init must be 'samples', 'random' or an array of starting points of shape {expected}; "
            f"got {init!r}."
        )
    array = np.asarray(init)
    if array.dtype.kind not in "biuf" or array.ndim != len(obs_shape) + 1 or array.shape[1:] != obs_shape:
        raise ValueError(
            f"init as an array must hold starting points of shape {expected} (numeric); "
            f"got shape {array.shape}, dtype {array.dtype}."
        )
    if len(array) == 0 or not np.all(np.isfinite(array)):
        raise ValueError("init as an array must hold at least one starting point, all finite.")
    return array.astype(np.float32), "array"


def _total_variation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squared-difference total variation of ``(n, H, W, C)`` images and its gradient."""
    down = x[:, 1:] - x[:, :-1]
    right = x[:, :, 1:] - x[:, :, :-1]
    value = (down**2).sum(axis=(1, 2, 3)) + (right**2).sum(axis=(1, 2, 3))
    gradient = np.zeros_like(x)
    gradient[:, 1:] += 2 * down
    gradient[:, :-1] -= 2 * down
    gradient[:, :, 1:] += 2 * right
    gradient[:, :, :-1] -= 2 * right
    return value, gradient


def maximize_activation(
    policy: Any,
    target: str = "action_1",
    *,
    init: str | np.ndarray = "samples",
    obs: Any = None,
    steps: int = 200,
    lr: float = 0.05,
    l2: float = 1e-3,
    tv: float = 0.0,
    n_starts: int = 8,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> ActivationMaximization:
    """Find observations that maximise a policy output, by projected gradient ascent.

    Maximises, for each starting point independently,
    ``target(x) - l2 * ||x - mean||² - tv * TV(x)`` over ``x`` in the box
    ``[low, high]``.

    Args:
        policy: an old-API-stack RLlib TF policy (``"tf"`` or ``"tf2"``).
        target: as in :func:`~rllib_saliency.explain`: ``"action"``,
            ``"action_K"``, ``"logp"`` or ``"value"``. Per-sample choices (the
            greedy action for ``"action"`` and ``"logp"``) are fixed at the
            starting points, so each run climbs one quantity throughout.
        init: ``"samples"`` (``n_starts`` rows of ``obs``, drawn with the
            seed; required ``obs``), ``"random"`` (uniform in the box) or an
            array ``(n, *obs_shape)`` of starting points (then ``n_starts`` is
            ignored). Starting points are clipped into the box.
        obs: preprocessed observations ``(N, *obs_shape)`` as in the policy's
            sample batches (rows with NaN/inf are ignored). They give the
            starting points for ``"samples"``, the L2 anchor (their mean;
            zeros without ``obs``) and the box on unbounded features.
        steps: gradient-ascent steps.
        lr: step size as a fraction of each feature's box width: Adam
            normalises the gradient, so one step moves a feature by about
            ``lr * (high - low)`` at most.
        l2: weight of the squared distance to ``mean`` (summed over features).
        tv: weight of the squared-difference total variation
            ``sum((x[i+1, j] - x[i, j])² + (x[i, j+1] - x[i, j])²)`` over rows,
            columns and channels (TV^β with β=2, Mahendran & Vedaldi 2015);
            only for image observations ``(H, W, C)``.
        n_starts: how many starting points (runs) for ``"samples"`` and ``"random"``.
        seed: seeds the choice of starting points.
        progress: called with the step number after every step (e.g. a progress bar).

    Recurrent models (``use_lstm``, ``use_attention``): the target is the
    model's output for one step from its initial state (an attention net: an
    empty memory; previous actions/rewards: zeros), as
    :func:`~rllib_saliency.explain` without ``state``; only the observation is
    optimised.

    The box: the observation space's bounds where finite. Bounds that are
    infinite or beyond ±1e6 (gymnasium's "unbounded", e.g. CartPole's
    velocities) are replaced by the range of ``obs`` on that feature widened by
    10 % of it on each side (at least 0.1), or by ±10 without ``obs``. Every
    iterate is clipped into the box after each step (projected gradient ascent),
    so the result always lies inside the observation space. Uint8 image spaces
    are searched continuously; the result is not rounded.

    The optimiser is Adam (β1=0.9, β2=0.999, ε=1e-8) on the objective's
    gradient, implemented in numpy; the model only computes the target's
    gradient. Raises ``ValueError`` naming the argument for bad arguments and
    ``TypeError`` for policies :func:`~rllib_saliency.explain` does not support.
    """
    backend = backend_for(policy)
    obs_shape = tuple(policy.observation_space.shape)
    spec = parse_target(target, policy.action_space)
    steps = _positive_int("steps", steps, "the number of gradient-ascent steps")
    n_starts = _positive_int("n_starts", n_starts, "how many starting points to optimise")
    lr = _number("lr", lr, "the step size as a fraction of each feature's range, e.g. 0.05", positive=True)
    l2 = _number("l2", l2, "the weight of the L2 pull toward the data mean; 0 turns it off", positive=False)
    tv = _number("tv", tv, "the weight of the total-variation regulariser; 0 turns it off", positive=False)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer; got {seed!r}.")
    if tv > 0 and len(obs_shape) != 3:
        raise ValueError(
            f"tv (total variation) applies to image observations of shape (H, W, C); this policy's "
            f"observations have shape {obs_shape}: set tv=0."
        )
    if progress is not None and not callable(progress):
        raise ValueError(f"progress must be a callable taking the step number, or None; got {progress!r}.")

    data = None
    if obs is not None:
        rows = _check_observations(obs, obs_shape)
        data = rows[np.all(np.isfinite(rows.reshape(len(rows), -1)), axis=1)]
        if len(data) == 0:
            raise ValueError("obs has no finite row: pass observations without NaN/inf, or obs=None.")
    low, high = observation_bounds(policy.observation_space, data, obs_shape)
    mean = data.mean(axis=0) if data is not None else np.zeros(obs_shape, np.float32)
    rng = np.random.default_rng(int(seed))
    starts, init_name = _starting_points(init, data, n_starts, low, high, rng, obs_shape)
    starts = np.clip(starts, low, high)
    n = len(starts)

    backend.sync_weights()
    # Recurrent models: one step from the initial state (the state is not optimised).
    states = initial_states(policy, n)
    chunks = [slice(i, i + CHUNK) for i in range(0, n, CHUNK)]
    value_needs_action = bool(getattr(backend, "value_needs_action", False))
    if needs_forward(spec, None, value_needs_action):  # the model's choices at the starts, chunk by chunk
        resolved = concatenate_targets(
            [
                resolve_at(
                    backend, spec, starts[chunk], tuple(s[chunk] for s in states), None, value_needs_action
                )
                for chunk in chunks
            ]
        )
    else:
        resolved = resolve_target(spec, n, None, None, None, states, value_needs_action)
    functions = [TargetFunction(backend, resolved.take(chunk)) for chunk in chunks]
    image = len(obs_shape) == 3

    def evaluate(x: np.ndarray, with_gradient: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Target values, objective values and (if asked) the objective's gradient."""
        parts = [
            fn.value_and_gradient(x[chunk]) if with_gradient else (fn.value(x[chunk]), None)
            for fn, chunk in zip(functions, chunks, strict=True)
        ]
        values = np.concatenate([p[0] for p in parts]).astype(np.float64)
        offset = x.astype(np.float64) - mean
        objective = values - l2 * (offset**2).reshape(n, -1).sum(axis=1)
        gradient = None
        if with_gradient:
            gradient = np.concatenate([p[1] for p in parts]).astype(np.float64) - 2 * l2 * offset
        if tv > 0 and image:
            tv_value, tv_gradient = _total_variation(x.astype(np.float64))
            objective = objective - tv * tv_value
            if gradient is not None:
                gradient = gradient - tv * tv_gradient
        return values, objective, gradient

    target_values = np.empty((steps + 1, n), np.float64)
    objective = np.empty((steps + 1, n), np.float64)
    width = (high.astype(np.float64) - low)[None]
    x = starts.copy()
    first = np.zeros_like(x, np.float64)
    second = np.zeros_like(x, np.float64)
    for step in range(steps):
        target_values[step], objective[step], gradient = evaluate(x, with_gradient=True)
        if not np.all(np.isfinite(gradient)):
            raise FloatingPointError(
                f"the gradient of target {target!r} became NaN/inf at step {step}; try a smaller lr "
                "or a larger l2."
            )
        first = BETA1 * first + (1 - BETA1) * gradient
        second = BETA2 * second + (1 - BETA2) * gradient**2
        direction = (first / (1 - BETA1 ** (step + 1))) / (
            np.sqrt(second / (1 - BETA2 ** (step + 1))) + EPSILON
        )
        # Ascent, then projection back into the box.
        x = np.clip(x + lr * width * direction, low, high).astype(np.float32)
        if progress is not None:
            progress(step + 1)
    target_values[steps], objective[steps], _ = evaluate(x, with_gradient=False)
    return ActivationMaximization(
        inputs=x,
        target_values=target_values,
        starts=starts,
        target=target,
        objective=objective,
        low=low,
        high=high,
        mean=np.asarray(mean, np.float32),
        options={"steps": steps, "lr": lr, "l2": l2, "tv": tv, "init": init_name, "seed": int(seed)},
    )
