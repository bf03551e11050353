"""RLlib's new API stack: torch RLModules, episodes, module ids.

Where the work runs: env runners only sample (a reservoir per module, filled
from the episodes ``on_sample_end`` receives). At a computation the driver
gathers the reservoirs and sends them to the learner, which explains them with
its own module: the only one with the value head (env runners' modules are
inference-only), always holding the current weights, on the learner's device
(a GPU if it has one). With ``num_learners=0`` the learner is in the driver
process; with remote learners each healthy one computes the same summaries
(``learner_group.foreach_learner`` has no public way to pick one) and the
first report is used. Every function sent to a worker returns
errors as data and never raises: an exception inside ``foreach_env_runner``
silently takes the runner down.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
import traceback
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from rllib_saliency.backends import check_supported, is_multi_module
from rllib_saliency.sample_summaries import FULL, ComputationPlan, Sample, explain_sample

NAME = "new"
DEFAULT_MODULE_ID = "default_policy"  # ray.rllib.core.DEFAULT_MODULE_ID, without importing it


def _check_module(module: Any) -> bool:
    """True for torch RLModules the engine explains; TypeError saying why for the others."""
    return check_supported(module) == "torch"


def _agent_parts(episode: Any) -> list[tuple[str, Any]]:
    """(module id, single-agent episode) pairs of a single- or multi-agent episode."""
    agent_episodes = getattr(episode, "agent_episodes", None)
    if agent_episodes is None:
        return [(getattr(episode, "module_id", None) or DEFAULT_MODULE_ID, episode)]
    return [(part.module_id, part) for part in agent_episodes.values()]


def layout_space(env_runner: Any, module: Any) -> Any:
    """The module's Box space carrying, as ``original_space``, the env's Dict/Tuple/Discrete space
    that RLlib's ``FlattenObservations`` connector flattened into it (single-agent runs), so
    features get names like ``pos.0`` and one-hot parts are summed per key; None otherwise."""
    import gymnasium as gym
    from ray.rllib.connectors.common.flatten_observations import FlattenObservations

    from rllib_saliency.structure import is_structured

    pipeline = getattr(env_runner, "_env_to_module", None)
    if not any(isinstance(c, FlattenObservations) for c in getattr(pipeline, "connectors", [])):
        return None
    original = getattr(pipeline, "input_observation_space", None)
    box = module.observation_space
    if original is None or not is_structured(original) or isinstance(box, gym.spaces.Dict):
        return None
    if gym.spaces.flatdim(original) != int(np.prod(box.shape)):
        return None  # multi-agent (a Dict of agents' spaces) or another transformation
    named = gym.spaces.Box(box.low, box.high, box.shape, box.dtype)
    named.original_space = original
    return named


def frame_stack_size(env_runner: Any) -> int | None:
    """``num_frames`` of a frame-stacking env-to-module connector in the runner's pipeline, if any."""
    from ray.rllib.connectors.common.frame_stacking import FrameStacking

    pipeline = getattr(env_runner, "_env_to_module", None)
    for connector in getattr(pipeline, "connectors", []):
        if isinstance(connector, FrameStacking) and not connector._as_learner_connector:
            return int(connector.num_frames)
    return None


def stacked_observations(episode: Any, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """The frame stacks the module saw at each step of a numpy-ized episode chunk, and which rows
    are exact.

    As RLlib's ``FrameStacking`` connector builds them: the last ``num_frames``
    observations concatenated on the last axis, zeros before the episode's start.
    A chunk that continues an episode keeps only ``episode_lookback_horizon``
    earlier observations, so its first rows lack frames: those rows are dropped.
    """
    n = len(episode)
    frames = np.asarray(
        episode.get_observations(indices=slice(-num_frames + 1, n), neg_index_as_lookback=True, fill=0.0)
    )
    stacks = np.concatenate([frames[k : k + n] for k in range(num_frames)], axis=-1)
    exact = np.ones(n, bool)
    if getattr(episode, "t_started", 0) > 0:
        lookback = int(getattr(episode.observations, "lookback", 0))
        exact[: max(0, num_frames - 1 - lookback)] = False
    return stacks, exact


def _recorded_dist_inputs(episode: Any) -> np.ndarray | None:
    try:
        return np.asarray(episode.get_extra_model_outputs(key="action_dist_inputs"))
    except (KeyError, AttributeError, IndexError):
        return None  # nothing recorded to compare with


def step_states(episode: Any, module: Any) -> tuple[np.ndarray, ...]:
    """The state each step of a numpy-ized episode chunk was taken in, for a stateful module: as
    RLlib's learner connector rebuilds it, the previous step's ``STATE_OUT`` (recorded while
    acting), and at the chunk's start the module's initial state (a new episode) or the last
    ``STATE_OUT`` of the previous chunk (kept in the lookback). Leaves in ``tree.flatten`` order."""
    import tree
    from ray.rllib.core.columns import Columns

    from rllib_saliency.recurrent import initial_state_arrays

    recorded = episode.get_extra_model_outputs(key=Columns.STATE_OUT)
    outs = [np.asarray(a, np.float32) for a in tree.flatten(recorded)]
    if getattr(episode, "t_started", 0) == 0:
        first = initial_state_arrays(module)
    else:
        previous = episode.get_extra_model_outputs(
            key=Columns.STATE_OUT, indices=-1, neg_index_as_lookback=True
        )
        first = [np.asarray(a, np.float32) for a in tree.flatten(previous)]
    return tuple(
        np.concatenate([f[None], o[:-1]]).astype(np.float32) for f, o in zip(first, outs, strict=True)
    )


def _check_faithful(
    store: Any,
    module_id: str,
    module: Any,
    obs: np.ndarray,
    recorded: np.ndarray | None,
    states: tuple[np.ndarray, ...] = (),
) -> bool:
    """Once per module: do the rows reproduce the action-distribution inputs RLlib recorded while
    acting (``recorded``, row by row)? Same weights: on_sample_end runs before the runner gets new ones."""
    if store.checked(module_id) or recorded is None or len(recorded) != len(obs):
        return True
    import torch
    from ray.rllib.core.columns import Columns

    from rllib_saliency.backends.torch import module_device, step_batch

    rows = slice(0, min(32, len(obs), len(recorded)))
    structure = module.get_initial_state() if states else None
    with torch.no_grad():
        inputs = torch.as_tensor(obs[rows], dtype=torch.float32, device=module_device(module))
        batch = step_batch(structure, inputs, tuple(s[rows] for s in states))
        outputs = module.forward_exploration(batch)[Columns.ACTION_DIST_INPUTS]
        outputs = (outputs[:, 0] if states else outputs).cpu().numpy()
    difference = float(np.max(np.abs(outputs - recorded[rows]), initial=0.0))
    if not np.allclose(outputs, recorded[rows], rtol=1e-3, atol=1e-4):
        store.refuse(
            module_id,
            TypeError(
                f"module {module_id!r}: the observations in its episodes are not what the module saw "
                f"(they reproduce its recorded action-distribution inputs only to {difference:.3g}): an "
                "env-to-module connector transforms them without writing the result back into the "
                "episode. Supported: connectors that write back (FlattenObservations, MeanStdFilter) "
                "and FrameStackingEnvToModule."
            ),
        )
        return False
    store.mark_checked(module_id)
    return True


def sample(callbacks: Any, env_runner: Any, episodes: list) -> None:
    """``on_sample_end``: offer each episode chunk's (observation, action) rows to their module's reservoir.

    The rows are the module's inputs: episode observations as the env-to-module
    connectors left them (``FlattenObservations`` and ``MeanStdFilter`` write
    back), frame stacks rebuilt as RLlib's ``FrameStackingEnvToModule`` builds
    them, and for stateful modules the state each step was taken in. Once per
    module the rows are checked against the action-distribution inputs RLlib
    recorded while acting; a module whose inputs cannot be rebuilt is reported
    once and skipped.
    """
    store = callbacks.store
    module = env_runner.module
    multi = hasattr(module, "keys") and callable(module.keys)
    num_frames = frame_stack_size(env_runner)
    for episode in episodes:
        for module_id, part in _agent_parts(episode):
            sub_module = module[module_id] if multi else module
            if not store.wants(module_id, sub_module, _check_module):
                continue
            actions = np.asarray(part.get_actions())
            if not len(actions):
                continue
            recorded = None if store.checked(module_id) else _recorded_dist_inputs(part)
            states = step_states(part, sub_module) if sub_module.is_stateful() else ()
            if num_frames:
                obs, exact = stacked_observations(part, num_frames)
                obs, actions = obs[exact], actions[exact]
                recorded = None if recorded is None else recorded[exact]
                states = tuple(s[exact] for s in states)
            else:
                obs = np.asarray(part.get_observations())[: len(actions)]
            expected = tuple(sub_module.observation_space.shape)
            if obs.shape[1:] != expected:
                store.refuse(
                    module_id,
                    TypeError(
                        f"module {module_id!r} takes observations of shape {expected}, but its episodes "
                        f"hold shape {obs.shape[1:]}: an env-to-module connector builds the module input "
                        "without writing it back into the episode, so the sampled rows are not what the "
                        "module saw."
                    ),
                )
                continue
            if len(obs) and _check_faithful(store, module_id, sub_module, obs, recorded, states):
                if module_id not in store.layout_spaces:
                    store.layout_spaces[module_id] = layout_space(env_runner, sub_module)
                store.add(module_id, getattr(env_runner, "worker_index", 0), obs, actions, states)


def take_samples(env_runner: Any, find: Callable[[Any], Any]) -> dict[str, Any]:
    """Runs on an env runner: its reservoirs (of the callbacks ``find`` finds on it), drained.
    Returns errors as data, never raises."""
    try:
        callbacks = find(env_runner)
        if callbacks is None:
            return {"errors": [("sampling", "NoCallbacks", "SaliencyCallbacks not found", 1)]}
        samples, skipped = callbacks.store.drain()
        return {
            "samples": samples,
            "skipped": skipped,
            "errors": callbacks.store.errors.take(),
            "layout_spaces": {k: v for k, v in callbacks.store.layout_spaces.items() if v is not None},
        }
    except BaseException as error:  # noqa: BLE001 - must not take the env runner down
        return {"errors": [("sampling", type(error).__name__, traceback.format_exc(), 1)]}


# How long a computation waits for an IMPALA/APPO learner's queued updates (see settle_learner).
SETTLE_TIMEOUT_S = 60.0


def _waiting_in(thread: Any, queue: Any) -> bool:
    """Whether ``thread`` is blocked in ``queue.get()`` (waiting for a batch, not training)."""
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        if frame.f_code.co_name == "get" and frame.f_locals.get("self") is queue:
            return True
        frame = frame.f_back
    return False


def settle_learner(learner: Any, timeout_s: float = SETTLE_TIMEOUT_S) -> str | None:
    """IMPALA and APPO learners train in a thread of their own (RLlib's ``_LearnerThread``) on the
    batches earlier ``update`` calls queued, while the learner actor serves this call: optimizer
    steps would change the module's weights in place under its passes (autograd then refuses the
    backward pass). Waits until that thread has trained on everything queued (IMPALA: at most
    ``learner_queue_size`` batches; APPO's circular buffer: each batch up to
    ``circular_buffer_iterations_per_batch`` times) and waits for the next batch; calls queued
    behind this one cannot add any meanwhile (an actor runs one call at a time). Returns why it
    could not (None: settled; other learners have no such thread and return at once)."""
    thread = getattr(learner, "_learner_thread", None)
    queue = getattr(learner, "_learner_thread_in_queue", None)
    if thread is None or queue is None:
        return None
    loader = getattr(learner, "_gpu_loader_in_queue", None)  # (GPU learners: batches on their way)
    deadline = time.monotonic() + timeout_s
    idle_checks = 0
    # Idle twice, 2 ms apart: a thread taking the last batch is still in get() for a moment with
    # the queue already empty; 2 ms later it is training on it.
    while idle_checks < 2:
        queued = queue.qsize() or (loader is not None and loader.qsize())
        idle = not queued and (_waiting_in(thread, queue) or not thread.is_alive())
        idle_checks = idle_checks + 1 if idle else 0
        if queued and not thread.is_alive():
            return "the learner's update thread has stopped with batches queued"
        if not idle and time.monotonic() > deadline:
            return f"the learner's update thread was still training after {timeout_s:.0f} s"
        time.sleep(0.002)
    return None


def explain_on_learner(
    learner: Any,
    samples: dict[str, Sample],
    settings: Any,
    seed: list[int],
    layout_spaces: dict,
    plan: ComputationPlan = FULL,
) -> dict:
    """Runs where the learner is: explain each module's samples with the learner's module."""
    try:
        report: dict[str, Any] = {"summaries": [], "errors": [], "deferred": {}}
        busy = settle_learner(learner)
        if busy is not None:
            report["errors"].append(("explain on learner", "LearnerBusy", busy, 1))
            return report
        modules = learner.module
        rng = np.random.default_rng(seed)
        for module_id, sample in samples.items():
            if module_id not in modules.keys():
                report["errors"].append(
                    (f"policy {module_id}", "UnknownModule", f"the learner has no module {module_id!r}", 1)
                )
                continue
            explained = explain_sample(
                modules[module_id], module_id, sample, settings, rng, layout_spaces.get(module_id), plan
            )
            report["summaries"] += explained.summaries
            report["errors"] += explained.errors
            report["deferred"].update({f"{module_id}/{k}": v for k, v in explained.deferred.items()})
        return report
    except BaseException as error:  # noqa: BLE001 - must not take a remote learner down
        details = traceback.format_exc()
        return {"summaries": [], "errors": [("explain on learner", type(error).__name__, details, 1)]}


def _merge_samples(parts: list[dict[str, Sample]]) -> dict[str, Sample]:
    by_module: dict[str, list[Sample]] = {}
    for part in parts:
        for module_id, sample in part.items():
            by_module.setdefault(module_id, []).append(sample)
    return {
        module_id: Sample(
            np.concatenate([s.obs for s in parts]),
            np.concatenate([s.actions for s in parts]),
            tuple(np.concatenate(arrays) for arrays in zip(*(s.states for s in parts), strict=True)),
        )
        for module_id, parts in by_module.items()
    }


def collect(
    callbacks: Any, algorithm: Any, find: Callable[[Any], Any], plan: ComputationPlan = FULL
) -> list[dict[str, Any]]:
    """Driver side: the env runners' reservoirs, explained where the learner is. ``find(runner)``
    returns the runner's callbacks instance (passed in: the callback package is a floor above)."""
    group = algorithm.env_runner_group
    take = functools.partial(take_samples, find=find)
    if group.num_remote_env_runners() > 0:
        parts = group.foreach_env_runner(take, local_env_runner=False, healthy_only=True)
    else:
        parts = [take(algorithm.env_runner)]
    return explain_parts(callbacks, algorithm, parts, plan)


def explain_parts(
    callbacks: Any, algorithm: Any, parts: list[dict[str, Any]], plan: ComputationPlan = FULL
) -> list[dict[str, Any]]:
    """Driver side: workers' drained reservoirs (env runners', or offline the learners' own,
    ``stacks/new/offline.py``) merged and explained where the learner is."""
    samples = _merge_samples([part.get("samples", {}) for part in parts])
    report: dict[str, Any] = {"errors": [], "skipped": {}}
    report["layout_spaces"] = {}
    for part in parts:
        report["layout_spaces"].update(part.get("layout_spaces", {}))
        report["errors"] += part.get("errors", [])
        for module_id, count in part.get("skipped", {}).items():
            report["skipped"][module_id] = report["skipped"].get(module_id, 0) + count
    if not samples:
        return [report]
    for module_id, sample in samples.items():
        callbacks.remember(module_id, sample)
    callbacks.add_starting_points(report, samples)
    compute = functools.partial(
        explain_on_learner,
        samples=samples,
        settings=callbacks.settings,
        seed=callbacks.computation_seed(),
        layout_spaces=report["layout_spaces"],
        plan=plan,
    )
    results = algorithm.learner_group.foreach_learner(compute)
    outcomes = [result.get() for result in results if result.ok]
    if not outcomes:
        errors = [str(result.get()) for result in results if not result.ok] or ["no healthy learner"]
        report["errors"].append(("explain on learner", "LearnerUnavailable", "\n".join(errors), 1))
        return [report]
    # Every learner holds the same weights: the first one's report is the computation.
    return [report, outcomes[0]]


def model(algorithm: Any, module_id: str) -> Any:
    """The module of that id in the driver's env runner (inference-only: enough for spaces and
    action targets)."""
    return algorithm.get_module(module_id)


def movie_on_learner(learner: Any, record: Any, module_id: str, settings: Any, label: str) -> Any:
    """Runs where the learner is: both heads' maps of a played episode with the learner's module
    (it has the value head). Returns the movie data, or an error record (never raises)."""
    from rllib_saliency.movie import compute_movie_data

    try:
        busy = settle_learner(learner)
        if busy is not None:
            return ("episode on learner", "LearnerBusy", busy, 1)
        data, _ = compute_movie_data(
            learner.module[module_id],
            record,
            settings.episode_method,
            settings.episode_method_options(),
            policy_id=module_id,
            checkpoint=label,
            feature_names=settings.feature_names_for(module_id, int(record.observations[0].size)),
        )
        return data
    except BaseException as error:  # noqa: BLE001 - must not take a remote learner down
        return ("episode on learner", type(error).__name__, traceback.format_exc(), 1)


def episode_data(algorithm: Any, module_id: str, settings: Any, seed: int, label: str) -> Any:
    """Driver side, ``episode_every``: one greedy episode (at most ``episode_max_steps`` steps)
    played by the driver's env runner's module (synced with the learner after each update)
    through copies of its connector pipelines (their state, e.g. filters, stays untouched) in a
    fresh env from the algorithm's config; the learner's module computes both heads' maps."""
    import copy

    runner = algorithm.env_runner
    if runner is None:
        raise RuntimeError(
            "training episodes need the driver's local env runner (config.env_runners("
            "create_local_env_runner=True), RLlib's default)."
        )

    def pipelines(env: Any) -> tuple[Any, Any]:
        return copy.deepcopy(runner._env_to_module), copy.deepcopy(runner._module_to_env)

    module = algorithm.get_module(module_id)
    return play_and_explain(algorithm, module, module_id, pipelines, settings, seed, label)


def play_and_explain(
    algorithm: Any,
    module: Any,
    module_id: str,
    pipelines: Callable[[Any], tuple[Any, Any]],
    settings: Any,
    seed: int,
    label: str,
) -> Any:
    """One greedy episode played by ``module`` in a fresh env from the algorithm's config, through
    the ``(env_to_module, module_to_env)`` pipelines ``pipelines(env)`` gives; the learner's
    module computes both heads' maps."""
    from rllib_saliency.stacks.new.rollout import make_env, play_new_stack_episodes

    env = make_env(algorithm.config.to_dict())
    env_to_module, module_to_env = pipelines(env)
    [record] = play_new_stack_episodes(
        env, env_to_module, module_to_env, module, module_id, 1, seed, settings.episode_max_steps
    )
    compute = functools.partial(
        movie_on_learner, record=record, module_id=module_id, settings=settings, label=label
    )
    outcomes = [result.get() for result in algorithm.learner_group.foreach_learner(compute) if result.ok]
    if not outcomes:
        raise RuntimeError("no healthy learner computed the training episode's maps")
    if isinstance(outcomes[0], tuple):
        stage, kind, details, _ = outcomes[0]
        raise RuntimeError(f"{stage} failed ({kind}):\n{details}")
    return outcomes[0]


# Local copies of remote learners' modules, per algorithm and module id: built once, their
# weights refreshed from the learner on every learner_module() call.
_learner_copies: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def model_ids(algorithm: Any) -> list[str]:
    """The ids of the learner's modules (the algorithm's MultiRLModule keys)."""
    group = algorithm.learner_group
    learner = getattr(group, "_learner", None) if group.is_local else None
    if learner is not None:
        return sorted(learner.module.keys())
    return sorted(_learner_module_spec(algorithm).rl_module_specs)


def _learner_module_spec(algorithm: Any) -> Any:
    """The MultiRLModuleSpec the learner group built its learners' modules from."""
    _, kwargs = algorithm.learner_group.get_ctor_args_and_kwargs()
    spec = kwargs.get("module_spec")
    if spec is None:
        spec = algorithm.config.get_multi_rl_module_spec(
            spaces=algorithm.env_runner_group.get_spaces(), inference_only=False
        )
    return spec


def learner_module(algorithm: Any, module_id: str) -> Any:
    """The learner's module ``module_id`` with the learner's current weights: the live module of a
    local learner (``num_learners=0``, except APPO/IMPALA with env runners), else a local CPU copy
    built once from the learner group's module spec and refreshed from
    ``learner_group.get_weights`` on every call (one transfer of that module's weights)."""
    group = algorithm.learner_group
    learner = getattr(group, "_learner", None) if group.is_local else None
    if learner is not None:
        return learner.module[module_id]
    copies = _learner_copies.setdefault(algorithm, {})
    module = copies.get(module_id)
    if module is None:
        spec = _learner_module_spec(algorithm).rl_module_specs[module_id]
        module = dataclasses.replace(spec, inference_only=False).build()
        copies[module_id] = module
    module.set_state(group.get_weights(module_ids=[module_id])[module_id])
    return module


def current_model(algorithm: Any, module_id: str) -> Any:
    """The model that holds every target with the current weights: the learner's module."""
    return learner_module(algorithm, module_id)


def env_runner_holding(module: Any) -> Any:
    """The EnvRunner whose (Multi)RLModule holds ``module``, if any in this process: e.g.
    ``algo.get_module()``, the driver's copy, whose weights RLlib syncs from the learner only for
    acting (never an LSTM module's value head; on APPO/IMPALA it lags). Found through the garbage
    collector's referrers (a module does not know its owner): ~50-100 ms, so callers cache it."""
    import gc

    from ray.rllib.env.env_runner import EnvRunner

    def owners(obj: Any) -> list[Any]:
        found = []
        for referrer in gc.get_referrers(obj):
            if isinstance(referrer, dict):  # an instance __dict__, or MultiRLModule._rl_modules
                found += [
                    o
                    for o in gc.get_referrers(referrer)
                    if getattr(o, "__dict__", None) is referrer or getattr(o, "_rl_modules", None) is referrer
                ]
            else:
                found.append(referrer)
        return found

    for owner in owners(module):
        if isinstance(owner, EnvRunner):
            return owner
        if is_multi_module(owner):
            runner = next((o for o in owners(owner) if isinstance(o, EnvRunner)), None)
            if runner is not None:
                return runner
    return None


# Per module: the EnvRunner holding it, or None (looked up once: see env_runner_holding).
_runner_of: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def check_model(model: Any, target: str) -> None:
    """A value target of an env runner's copy (e.g. ``algo.get_module()``) would explain a value
    head RLlib does not keep current: refused, naming what works."""
    from rllib_saliency.errors import UnsupportedTarget

    if target != "value":
        return
    if model not in _runner_of:
        _runner_of[model] = env_runner_holding(model)
    runner = _runner_of[model]
    if runner is not None:
        raise UnsupportedTarget(
            f"target 'value': this {type(model).__name__} is {type(runner).__name__} "
            f"{getattr(runner, 'worker_index', 0)}'s copy of the module (e.g. algo.get_module()), "
            "which RLlib syncs from the learner only for acting: its value head is missing or not the "
            "learner's current one. Pass the algorithm instead, explain(algo, obs, target='value') "
            "(with module_id= for multi-agent), or rllib_saliency.learner_module(algo)."
        )
