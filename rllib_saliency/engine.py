"""``explain()``: input attributions for a batch of observations through a policy's own model."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rllib_saliency.backends import Backend, TargetFunction, backend_for
from rllib_saliency.backends.base import finite_rows, resolve_at
from rllib_saliency.methods import BatchContext, get_method
from rllib_saliency.recurrent import initial_states, recurrent_layout
from rllib_saliency.structure import is_structured, original_space, unflatten
from rllib_saliency.targets import (
    ResolvedTarget,
    concatenate_targets,
    needs_forward,
    parse_target,
    resolve_target,
)


@dataclass(frozen=True)
class Attribution:
    """The result of :func:`explain`.

    values: float32, the shape of ``observations``; attribution of each feature.
    observations: the batch explained, float32; the caller's own array when it was float32
        already (not copied).
    target_values: ``(N,)``, the explained quantity at the observations.
    delta: Integrated Gradients only: per-sample completeness error
        ``sum(values) - (f(x) - f(baseline))``.
    structured: with ``explain(..., structured=True)`` on a Dict/Tuple/Discrete
        observation space, ``values`` in the original structure (see
        :func:`rllib_saliency.structure.unflatten`).
    Rows whose observation is not finite are NaN in ``values``,
    ``target_values`` and ``delta``; the other rows are unaffected.
    """

    values: np.ndarray
    target_values: np.ndarray
    method: str
    target: str
    observations: np.ndarray
    delta: np.ndarray | None = None
    options: dict[str, Any] = field(default_factory=dict)
    structured: Any = None
    # What was explained, for re-evaluating the same target (trust metrics): the
    # per-sample choices of the finite rows, and which rows those are.
    resolved: ResolvedTarget | None = field(default=None, repr=False)
    finite: np.ndarray | None = field(default=None, repr=False)
    # The explained model's spaces and kind (``backends.model_kind``), for naming its features and
    # saying what the target is in a chart (``rllib_saliency.plot``); None where not known.
    observation_space: Any = field(default=None, repr=False)
    action_space: Any = field(default=None, repr=False)
    model_kind: str | None = field(default=None, repr=False)


def _expected_shape(obs_shape: tuple[int, ...]) -> str:
    return f"(N, {', '.join(map(str, obs_shape))})" if obs_shape else "(N,)"


def _check_observations(obs: Any, obs_shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(obs)
    if array.dtype.kind not in "biuf":
        expected = _expected_shape(obs_shape)
        raise ValueError(
            f"obs must be a numeric array of shape {expected} (preprocessed observations as in "
            f"the policy's sample batches); got dtype {array.dtype}."
        )
    if array.shape[1:] != tuple(obs_shape) or array.ndim != len(obs_shape) + 1 or len(array) == 0:
        expected = _expected_shape(obs_shape)
        raise ValueError(
            f"obs must have shape {expected} (a non-empty batch of preprocessed observations as in "
            f"the policy's sample batches, policy.observation_space.shape={tuple(obs_shape)}); "
            f"got shape {array.shape}."
        )
    # A float32 batch is used as it is, not copied: explain() never writes to it (on a GPU the
    # host copy cost more than the convolutions, issue 20).
    return array if array.dtype == np.float32 else array.astype(np.float32)


# Rows per pass when a backend has no rule of its own (the TF backends), and the rows each
# SmoothGrad noise generator is seeded for when batch_size is left to the backend: the same
# noise as the former default batch_size=1024 gave.
DEFAULT_BATCH_SIZE = 1024


def _check_actions(actions: Any, action_space: Any, n: int) -> np.ndarray:
    array = np.asarray(actions)
    expected = (n, *action_space.shape)
    if array.shape != expected:
        raise ValueError(
            f"actions must have shape {expected} (one action per observation); got {array.shape}."
        )
    return array.astype(action_space.dtype)


def _check_states(policy: Any, state: Any, n: int) -> tuple[np.ndarray, ...]:
    """Per-sample step inputs (recurrent states, previous actions/rewards): given, or the
    first step of an episode for every sample."""
    if state is None:
        return initial_states(policy, n)
    layout = recurrent_layout(policy)
    if layout.kind == "none":
        raise ValueError(
            "state is only for recurrent policies (use_lstm=True or use_attention=True); "
            "this policy has none."
        )
    if isinstance(state, dict):
        unknown = sorted(set(state) - set(layout.names))
        missing = [name for name in layout.names if name not in state]
        if unknown or missing:
            raise ValueError(
                f"state must have exactly the keys {list(layout.names)}; "
                + (f"unknown: {unknown}" if unknown else f"missing: {missing}")
                + "."
            )
        state = [state[name] for name in layout.names]
    expected = [(n, *shape) for shape in layout.shapes]
    arrays = [np.asarray(s) for s in state]
    if [a.shape for a in arrays] != expected:
        what = {
            "attention": "the memory of previous steps' outputs per transformer unit",
            "lstm": "the recurrent state",
        }[layout.kind]
        if layout.num_states < len(layout.inputs):
            what += ", then " + " and ".join(layout.names[layout.num_states :])
        raise ValueError(
            f"state must be a list of {len(expected)} arrays of shapes {expected} ({what} each "
            "observation's step was taken in, e.g. rllib_saliency.per_step_states(batch, policy)), "
            f"or a dict with keys {list(layout.names)}; got shapes {[a.shape for a in arrays]}."
        )
    return tuple(a.astype(i.dtype) for a, i in zip(arrays, layout.inputs, strict=True))


def explain(
    policy: Any,
    obs: Any,
    method: str = "gradient",
    target: str = "action",
    *,
    actions: Any = None,
    batch_size: int | None = None,
    structured: bool = False,
    state: Any = None,
    backend: Backend | None = None,
    resolved_target: ResolvedTarget | None = None,
    **method_options: Any,
) -> Attribution:
    """Attribute a policy output to the observation features, batch-wise.

    Args:
        policy: an old-API-stack RLlib TF policy (framework ``"tf"`` or ``"tf2"``).
        obs: preprocessed observations ``(N, *policy.observation_space.shape)``.
        method: ``"gradient"``, ``"gradient_x_input"``, ``"smoothgrad"``,
            ``"integrated_gradients"`` or ``"occlusion"``.
        target: ``"action"``, ``"action_K"``, ``"logp"``, ``"value"`` or ``"advantage"``
            (dueling Q-networks). What each means per kind of model: README's algorithm table.
        actions: for ``target="logp"``, the actions whose log-probability is
            explained (default: the greedy action at each observation); for ``"advantage"``
            the actions whose advantage is explained; for ``"value"`` of a SAC module the
            actions its Q-networks are evaluated at (default: the greedy action, held fixed).
        batch_size: most observations sent through the model at once. Default (None): the
            backend's rule; torch: up to 1,024 rows in one pass, a larger batch whole when it
            fits in half the free memory of the module's device (a quarter of the available
            RAM on a CPU), measured per row once per module; TF: 1,024.
        structured: also return the attributions in the original observation
            structure (``Attribution.structured``) for Dict/Tuple/Discrete spaces.
        state: recurrent policies only (LSTM, attention net): the state each
            observation's step was taken in, one ``(N, ...)`` array per state
            input, then the previous actions/rewards if the model is fed them
            (or a dict by name: ``state_in_K``, ``prev_actions``,
            ``prev_rewards``); default: an episode's first step.
            :func:`per_step_states` rebuilds it from a sample batch.
            Attributions are one-step saliency given that state.
        backend: advanced: run on this backend instead of the policy's own (e.g. a
            model with re-initialised weights for the randomisation check).
        resolved_target: advanced: explain exactly the per-sample choices of an
            earlier attribution of the same observations (``attribution.resolved``).
        **method_options: options of the method (e.g. ``steps=32`` for IG).

    In graph mode no op is ever added to the policy's graph; in eager mode
    the compiled functions are traced once per target kind.
    """
    backend = backend or backend_for(policy)
    # A backend may hold a set-up for the whole call (torch: eval mode once, not per batch).
    with getattr(backend, "explaining", contextlib.nullcontext)():
        return _explain(
            policy,
            obs,
            method,
            target,
            actions,
            batch_size,
            structured,
            state,
            backend,
            resolved_target,
            method_options,
        )


def _explain(
    policy: Any,
    obs: Any,
    method: str,
    target: str,
    actions: Any,
    batch_size: int | None,
    structured: bool,
    state: Any,
    backend: Backend,
    resolved_target: ResolvedTarget | None,
    method_options: dict[str, Any],
) -> Attribution:
    attribution_method = get_method(method)
    obs_shape = tuple(policy.observation_space.shape)
    options = attribution_method.check_options(method_options, obs_shape)
    spec = parse_target(target, policy.action_space)
    observations = _check_observations(obs, obs_shape)
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
    n = len(observations)
    if actions is not None:
        actions = _check_actions(actions, policy.action_space, n)
    states = _check_states(policy, state, n)

    # Non-finite rows are left out of every computation (and of batch
    # statistics), so they cannot poison the others; their results are NaN.
    # (A backend may check where it computes: torch copies the batch to its device once, here.)
    finite = getattr(backend, "finite_rows", finite_rows)(observations)
    all_finite = bool(finite.all())
    rows = observations if all_finite else observations[finite]

    backend.sync_weights()
    if not all_finite:  # (else the checked arrays as they are: copies made here, not the caller's)
        if actions is not None:
            actions = actions[finite]
        states = tuple(s[finite] for s in states)
    if resolved_target is not None:
        if resolved_target.kind != ("dist_input" if spec.kind == "greedy_logit" else spec.kind):
            raise ValueError(f"resolved_target is of kind {resolved_target.kind!r}, not target {target!r}.")
    # Targets that need the greedy action are resolved chunk by chunk, right before the chunk's
    # attribution: a backend that keeps its forward pass (torch) then differentiates that pass
    # instead of running the model again at the same observations.
    # (SAC: the value is a Q-value at the greedy action, which the backend says.)
    value_needs_action = bool(getattr(backend, "value_needs_action", False))
    per_chunk = resolved_target is None and needs_forward(spec, actions, value_needs_action) and len(rows) > 0
    if resolved_target is None and not per_chunk:
        resolved_target = resolve_target(spec, len(rows), None, None, actions, states, value_needs_action)
    chunk_targets: list[ResolvedTarget] = []

    seed_block = batch_size
    if batch_size is None:
        rule = getattr(backend, "pass_rows", None)
        batch_size = DEFAULT_BATCH_SIZE if rule is None else rule(len(rows), obs_shape, spec.kind == "value")
        # Passes of whole 1,024-row blocks draw the noise the former default did, pass size aside.
        if batch_size >= DEFAULT_BATCH_SIZE:
            seed_block = DEFAULT_BATCH_SIZE
            if batch_size < len(rows):
                batch_size -= batch_size % DEFAULT_BATCH_SIZE
        else:
            seed_block = batch_size
    one_pass = all_finite and len(rows) <= batch_size
    # One pass over a finite batch: its attributions are the result as they come back, no copy.
    values = None if one_pass else np.full(observations.shape, np.nan, np.float32)
    target_values = np.full(n, np.nan, np.float32)
    delta = None  # (made for a method that has it)
    finite_index = None if all_finite else np.flatnonzero(finite)
    for start in range(0, len(rows), batch_size):
        chunk = slice(start, start + batch_size)
        # (The whole batch as itself, not a view: a backend recognises the array it staged.)
        inputs = rows if len(rows) <= batch_size else rows[chunk]
        if per_chunk:
            chunk_states = tuple(s[chunk] for s in states)
            chunk_actions = None if actions is None else actions[chunk]
            chunk_target = resolve_at(backend, spec, inputs, chunk_states, chunk_actions, value_needs_action)
            chunk_targets.append(chunk_target)
        else:
            chunk_target = resolved_target.take(chunk)
        fn = TargetFunction(backend, chunk_target, origin=inputs)
        # Seeding per chunk keeps results independent of earlier calls.
        chunk_context = BatchContext(rows, options.get("seed", 0), start, seed_block)
        result = attribution_method.attribute(fn, inputs, chunk_context, **options)
        index = chunk if all_finite else finite_index[chunk]
        if values is None:
            values = np.asarray(result.values, np.float32)
            if np.may_share_memory(values, observations):  # never hand back the caller's own array
                values = values.copy()
        else:
            values[index] = result.values
        target_values[index] = fn.value(inputs)
        if result.delta is not None:
            if delta is None:
                delta = np.full(n, np.nan, np.float32)
            delta[index] = result.delta
    if not per_chunk:
        resolved = resolved_target
    else:  # (one chunk, most calls: its target as it is, not a copy)
        resolved = chunk_targets[0] if len(chunk_targets) == 1 else concatenate_targets(chunk_targets)
    nested = None
    if structured:
        space = original_space(policy.observation_space)
        if not is_structured(space):
            raise ValueError(
                f"structured=True needs a Dict, Tuple, Discrete or MultiDiscrete observation space; "
                f"this policy's is {space}."
            )
        nested = unflatten(values, observations, space)
    return Attribution(
        structured=nested,
        values=values,
        target_values=target_values,
        method=method,
        target=target,
        observations=observations,
        delta=delta,
        options=options,
        resolved=resolved,
        finite=finite,
        observation_space=policy.observation_space,
        action_space=policy.action_space,
        model_kind=getattr(backend, "model_kind", "policy"),
    )
