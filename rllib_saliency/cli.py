"""``rllib-saliency``: offline saliency and activation maximization from an RLlib checkpoint.

Two subcommands, ``explain`` and ``maximize``. Each loads an old-API-stack
TensorFlow checkpoint (an algorithm's, from ``algo.save()``, or a policy's, from
``policy.export_checkpoint()``), gets observations (by rolling out the trained
policy greedily in its own environment, or from a ``.npy`` file), computes, and
writes TensorBoard events (the training callback's tag scheme), PNG files and an
``.npz`` into ``--out``.

Errors a user can fix (a wrong path, an unsupported checkpoint, an unknown policy
id, an environment or model registered in a module that was not imported) are
printed as one message with exit code 1, without a traceback.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import logging
import os
import pickle
import re
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PROG = "rllib-saliency"
SUPPORTED = (
    "rllib-saliency supports old-API-stack TensorFlow checkpoints: algorithms or policies built with "
    "config.framework('tf') or config.framework('tf2') and config.api_stack("
    "enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)"
)
IMPORT_HINT = (
    "pass --import MODULE with the module that registers it (the one that calls "
    "ray.tune.registry.register_env / ModelCatalog.register_custom_model or defines the class); "
    "run from the directory that holds the module or put that directory on PYTHONPATH"
)
IMPORT_HELP = (
    "import MODULE before loading the checkpoint, so that custom environments, models and "
    "callbacks registered or defined there are found (repeatable; the current directory is on "
    "the import path)"
)
DEFAULT_EPISODES = 5
HISTOGRAM_LIMIT = 10_000


class CLIError(Exception):
    """An error the user can fix: printed as one message, exit code 1, no traceback."""


# ----- checkpoints ------------------------------------------------------------------------


class _Opaque:
    """Stands in for TensorFlow/Keras objects while peeking at a state file.

    Unpickling a "tf2" policy's optimizer variables creates TensorFlow objects,
    which fixes TF's execution mode (graph) before we know whether the
    checkpoint needs eager mode. Peeking with these stand-ins reads the config
    without touching TensorFlow.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> _Opaque:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Opaque:
        return _Opaque()

    def __setstate__(self, state: Any) -> None:
        pass

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


class _PeekUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] in ("tensorflow", "tf_keras", "keras"):
            return _Opaque
        return super().find_class(module, name)


def _unpickle(path: str, peek: bool) -> Any:
    """Load a cloudpickle state file; missing user code becomes a CLIError naming --import."""
    try:
        with open(path, "rb") as file:
            if peek:
                return _PeekUnpickler(file).load()
            import ray.cloudpickle

            return ray.cloudpickle.load(file)
    except (ModuleNotFoundError, AttributeError) as error:
        # A class or function pickled by reference whose module is not imported
        # (ModuleNotFoundError) or does not define it (AttributeError "Can't get attribute").
        raise CLIError(
            f"the checkpoint refers to code that cannot be found in this process ({error}); {IMPORT_HINT}."
        ) from error


@dataclass
class Checkpoint:
    """What the CLI learnt about a checkpoint before building anything."""

    path: str
    kind: str  # "Algorithm" or "Policy"
    policy_id: str
    policy_ids: list[str]
    framework: str
    config: dict[str, Any]  # the selected policy's config (env, model, filters, ...)
    step: int
    info: dict[str, Any] = field(default_factory=dict)
    # The policy's spaces as its saved spec tells (None if it cannot: then arguments that
    # depend on them are checked after the policy is loaded).
    obs_shape: tuple[int, ...] | None = None
    action_space: Any = None


def _spec_spaces(policy_state: dict[str, Any]) -> dict[str, Any]:
    """``obs_shape`` and ``action_space`` of a saved policy spec, where it can tell."""
    import gymnasium as gym
    from ray.rllib.utils.serialization import space_from_dict

    spec = policy_state.get("policy_spec") or {}
    spaces = {}
    for key in ("observation_space", "action_space"):
        if isinstance(spec.get(key), dict):
            try:
                spaces[key] = space_from_dict(spec[key])
            except (KeyError, TypeError, ValueError):
                spaces[key] = None
    observation_space = spaces.get("observation_space")
    return {
        "obs_shape": tuple(observation_space.shape)
        if isinstance(observation_space, gym.spaces.Box)
        else None,
        "action_space": spaces.get("action_space"),
    }


def _checkpoint_help(path: str) -> str:
    return (
        f"{path!r} is not an RLlib checkpoint directory: pass the directory written by "
        "algo.save(...) (it holds rllib_checkpoint.json, algorithm_state.pkl and policies/) or by "
        "policy.export_checkpoint(...) (it holds policy_state.pkl)"
    )


def _read_metadata(path: str) -> dict[str, Any]:
    metadata_path = os.path.join(path, "rllib_checkpoint.json")
    if not os.path.isfile(metadata_path):
        return {}
    try:
        with open(metadata_path) as file:
            metadata = json.load(file)
    except (OSError, ValueError) as error:
        raise CLIError(
            f"{metadata_path!r} is not readable JSON ({error}); the checkpoint is damaged."
        ) from error
    return metadata if isinstance(metadata, dict) else {}


def inspect_checkpoint(path: str, policy_id: str | None) -> Checkpoint:
    """Validate a checkpoint and pick the policy, without building anything or starting Ray."""
    from packaging import version
    from ray.rllib.utils.checkpoints import get_checkpoint_info

    if not os.path.exists(path):
        raise CLIError(f"{path!r} does not exist; {_checkpoint_help(path).split(': ', 1)[1]}.")
    if not os.path.isdir(path):
        raise CLIError(_checkpoint_help(path) + ".")
    path = os.path.abspath(path)
    names = os.listdir(path)
    if not any(
        name in ("rllib_checkpoint.json", "algorithm_state.pkl", "policy_state.pkl")
        or re.fullmatch(r"checkpoint-\d+", name)
        for name in names
    ):
        raise CLIError(_checkpoint_help(path) + ".")
    # New-API-stack checkpoints say so in their metadata; read it before RLlib does.
    metadata = _read_metadata(path)
    declared = metadata.get("checkpoint_version")
    if declared is not None and version.Version(str(declared)) >= version.Version("2.0"):
        raise CLIError(
            f"{path!r} is a new-API-stack checkpoint (RLModule/Learner, checkpoint version "
            f"{declared}), which Ray 2.60 builds with torch only. {SUPPORTED}."
        )
    try:
        info = get_checkpoint_info(path)
    except (ValueError, OSError) as error:
        raise CLIError(f"{_checkpoint_help(path)} ({error}).") from error
    checkpoint_version = info["checkpoint_version"]
    if checkpoint_version >= version.Version("2.0") or os.path.exists(
        os.path.join(path, "class_and_ctor_args.pkl")
    ):
        raise CLIError(
            f"{path!r} is a new-API-stack checkpoint (RLModule/Learner, checkpoint version "
            f"{checkpoint_version}), which Ray 2.60 builds with torch only. {SUPPORTED}."
        )
    if checkpoint_version < version.Version("1.0"):
        raise CLIError(
            f"{path!r} is a checkpoint of format v{checkpoint_version} (Ray < 2.1), which "
            f"Algorithm.from_checkpoint cannot read; re-save it with Ray >= 2.1. {SUPPORTED}."
        )
    if info.get("format") != "cloudpickle":
        raise CLIError(
            f"{path!r} is a {info.get('format')} checkpoint; rllib-saliency reads the default "
            "cloudpickle format (algo.save() without msgpack)."
        )
    if info["type"] == "Policy":
        return _inspect_policy_checkpoint(path, policy_id, info)
    return _inspect_algorithm_checkpoint(path, policy_id, info)


def _check_framework(path: str, config: dict[str, Any]) -> str:
    if config.get("enable_rl_module_and_learner") or config.get("_enable_new_api_stack"):
        raise CLIError(f"{path!r} was trained on RLlib's new API stack. {SUPPORTED}.")
    # AlgorithmConfig.to_dict() says "framework_str", a policy's config "framework".
    framework = config.get("framework_str") or config.get("framework") or "tf"
    if framework not in ("tf", "tf2"):
        raise CLIError(
            f"{path!r} was trained with framework {framework!r}. {SUPPORTED}. "
            "(Torch policies are not supported yet.)"
        )
    return framework


def _choose_policy(path: str, requested: str | None, available: Sequence[str]) -> str:
    listed = ", ".join(repr(p) for p in sorted(available))
    if requested is not None:
        if requested not in available:
            raise CLIError(f"policy {requested!r} is not in {path!r}; available policies: {listed}.")
        return requested
    if "default_policy" in available:
        return "default_policy"
    if len(available) == 1:
        return next(iter(available))
    raise CLIError(f"{path!r} holds several policies ({listed}): choose one with --policy ID.")


def _inspect_algorithm_checkpoint(path: str, policy_id: str | None, info: dict[str, Any]) -> Checkpoint:
    state = _unpickle(info["state_file"], peek=True)
    config = state.get("config") or {}
    if not isinstance(config, dict):
        config = dict(getattr(config, "to_dict", lambda: {})())
    framework = _check_framework(path, config)
    available = sorted(info.get("policy_ids") or (state.get("worker") or {}).get("policy_ids") or [])
    chosen = _choose_policy(path, policy_id, available)
    policy_file = os.path.join(path, "policies", chosen, "policy_state.pkl")
    if not os.path.isfile(policy_file):
        raise CLIError(f"{path!r} lacks {policy_file!r}: the checkpoint is incomplete.")
    policy_state = _unpickle(policy_file, peek=True)
    policy_config = {**config, **((policy_state.get("policy_spec") or {}).get("config") or {})}
    counters = state.get("counters") or {}
    by_agent = config.get("count_steps_by") == "agent_steps"
    step = int(counters.get("num_agent_steps_sampled" if by_agent else "num_env_steps_sampled", 0))
    step = step or int(state.get("training_iteration") or 0)
    return Checkpoint(
        path,
        "Algorithm",
        chosen,
        available,
        framework,
        policy_config,
        step,
        info,
        **_spec_spaces(policy_state),
    )


def _inspect_policy_checkpoint(path: str, policy_id: str | None, info: dict[str, Any]) -> Checkpoint:
    state = _unpickle(info["state_file"], peek=True)
    config = (state.get("policy_spec") or {}).get("config") or {}
    framework = _check_framework(path, config)
    own_id = str(config.get("__policy_id") or "default_policy")
    chosen = _choose_policy(path, policy_id, [own_id])
    step = int(np.asarray(state.get("global_timestep", 0)))
    return Checkpoint(path, "Policy", chosen, [own_id], framework, config, step, info, **_spec_spaces(state))


def _check_custom_code(config: dict[str, Any]) -> None:
    """Custom models and action distributions named in the config must be registered."""
    from ray.tune.registry import RLLIB_ACTION_DIST, RLLIB_MODEL, _global_registry

    model = config.get("model") or {}
    for key, category, what in (
        ("custom_model", RLLIB_MODEL, "custom model"),
        ("custom_action_dist", RLLIB_ACTION_DIST, "custom action distribution"),
    ):
        name = model.get(key)
        if isinstance(name, str) and not _global_registry.contains(category, name):
            raise CLIError(
                f"{what} {name!r} (model config {key!r}) is not registered in this process; {IMPORT_HINT}."
            )


def _check_environment(config: dict[str, Any]) -> None:
    """A plain env name must be registered with Tune or gymnasium (class paths are left to RLlib)."""
    import gymnasium as gym
    from ray.tune.registry import ENV_CREATOR, _global_registry

    env = config.get("env")
    if env is None:
        raise CLIError(
            "the checkpoint names no environment to roll out in; pass observations with --obs FILE."
        )
    if isinstance(env, str) and not re.search(r"[./:]", env):
        if not _global_registry.contains(ENV_CREATOR, env) and env not in gym.registry:
            raise CLIError(
                f"environment {env!r} cannot be found: it is neither registered with "
                f"ray.tune.registry.register_env in this process nor a gymnasium id; {IMPORT_HINT}."
            )


def _env_error(config: dict[str, Any], error: BaseException) -> CLIError:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return CLIError(f"environment {config.get('env')!r} cannot be created ({first_line}); {IMPORT_HINT}.")


def _use_framework(framework: str) -> None:
    """Eager checkpoints need TF's eager mode, which must be on before any TF object exists."""
    if framework == "tf2":
        import tensorflow as tf

        if not tf.compat.v1.executing_eagerly():
            tf.compat.v1.enable_eager_execution()


# ----- loading and rolling out --------------------------------------------------------------


def load_policy(checkpoint: Checkpoint) -> Any:
    """The checkpoint's selected policy, with its trained weights (no environment needed)."""
    from ray.rllib.policy.policy import Policy

    _use_framework(checkpoint.framework)
    _check_custom_code(checkpoint.config)
    if checkpoint.kind == "Policy":
        state = _unpickle(checkpoint.info["state_file"], peek=False)
    else:
        state = _unpickle(
            os.path.join(checkpoint.path, "policies", checkpoint.policy_id, "policy_state.pkl"), peek=False
        )
    return Policy.from_state(state)


def build_algorithm(checkpoint: Checkpoint, seed: int) -> Any:
    """The algorithm, rebuilt for greedy rollouts on the driver only (no remote env runners)."""
    from ray.rllib.algorithms.algorithm import Algorithm
    from ray.rllib.utils.error import EnvError

    _use_framework(checkpoint.framework)
    _check_environment(checkpoint.config)
    _check_custom_code(checkpoint.config)
    try:
        state = Algorithm._checkpoint_info_to_algorithm_state(checkpoint.info)
    except (ModuleNotFoundError, AttributeError) as error:
        raise CLIError(
            f"the checkpoint refers to code that cannot be found ({error}); {IMPORT_HINT}."
        ) from error
    config = state["config"]
    # Greedy, whole episodes, sampled in this process; no GPUs, no evaluation workers.
    config.env_runners(
        num_env_runners=0,
        num_envs_per_env_runner=1,
        explore=False,
        batch_mode="complete_episodes",
        rollout_fragment_length=1,
        num_gpus_per_env_runner=0,
    )
    config.evaluation(evaluation_interval=None, evaluation_num_env_runners=0)
    config.resources(num_gpus=0)
    config.debugging(seed=seed)  # seeds the env runner's environment
    # A restored policy takes its config from its saved spec: switch exploration off there too.
    for policy_state in state["worker"]["policy_states"].values():
        spec_config = (policy_state.get("policy_spec") or {}).get("config")
        if isinstance(spec_config, dict):
            spec_config["explore"] = False
    try:
        return Algorithm.from_state(state)
    except EnvError as error:
        raise _env_error(checkpoint.config, error) from error


@dataclass
class Rollouts:
    observations: np.ndarray
    actions: np.ndarray
    episode_ids: np.ndarray
    episodes: int
    states: tuple[np.ndarray, ...] = ()  # recurrent models: the state each step was taken in


def rollout_algorithm(algorithm: Any, policy_id: str, episodes: int, bar: Any) -> Rollouts:
    """Whole greedy episodes from the algorithm's own env runner (its env, preprocessing, filters)."""
    from rllib_saliency.recurrent import per_step_states

    worker = algorithm.env_runner
    policy = algorithm.get_policy(policy_id)
    recurrent = policy.is_recurrent()
    observations, actions, episode_ids, states = [], [], [], []
    done = 0
    while done < episodes:
        batches = worker.sample().as_multi_agent().policy_batches
        # The episodes in this sample, in order of appearance (complete_episodes mode).
        ids = list(dict.fromkeys(int(e) for b in batches.values() for e in np.asarray(b["eps_id"])))
        keep = ids[: episodes - done]
        batch = batches.get(policy_id)
        if batch is not None:
            rows = np.isin(np.asarray(batch["eps_id"]).astype(np.int64), keep)
            observations.append(np.asarray(batch["obs"])[rows])
            actions.append(np.asarray(batch["actions"])[rows])
            episode_ids.append(np.asarray(batch["eps_id"])[rows].astype(np.int64))
            if recurrent:
                states.append([state[rows] for state in per_step_states(batch, policy)])
        done += len(keep)
        bar.update(len(keep))
    return _collect(observations, actions, episode_ids, done, policy_id, states)


def _collect(
    observations: list[np.ndarray],
    actions: list[np.ndarray],
    episode_ids: list[np.ndarray],
    episodes: int,
    policy_id: str,
    states: list[list[np.ndarray]],
) -> Rollouts:
    if not observations or sum(len(o) for o in observations) == 0:
        raise CLIError(f"policy {policy_id!r} did not act in the {episodes} episode(s) rolled out.")
    return Rollouts(
        np.concatenate(observations).astype(np.float32),
        np.concatenate(actions),
        np.concatenate(episode_ids),
        episodes,
        tuple(np.concatenate(parts) for parts in zip(*states, strict=True)),
    )


def _make_env(config: dict[str, Any]) -> Any:
    """The policy's environment as RLlib would create it for a local env runner."""
    import gymnasium as gym
    from ray.rllib.env.env_context import EnvContext
    from ray.rllib.env.utils import _gym_env_creator
    from ray.rllib.utils.from_config import from_config
    from ray.tune.registry import ENV_CREATOR, _global_registry

    _check_environment(config)
    env = config.get("env")
    context = EnvContext(dict(config.get("env_config") or {}), worker_index=0, num_workers=0)
    try:
        if isinstance(env, str) and _global_registry.contains(ENV_CREATOR, env):
            return _global_registry.get(ENV_CREATOR, env)(context)
        if isinstance(env, str) and "." in env and ":" not in env and "/" not in env:
            return from_config(env, context)
        if isinstance(env, type) and not issubclass(env, gym.Env):
            return env(context)
        return _gym_env_creator(context, env_descriptor=env)
    except (gym.error.Error, ValueError, ImportError) as error:
        raise _env_error(config, error) from error


def rollout_policy(policy: Any, config: dict[str, Any], episodes: int, seed: int, bar: Any) -> Rollouts:
    """Greedy episodes with a policy restored from a policy checkpoint, in a loop of our own
    that mirrors RLlib's local env runner: Atari DeepMind wrapping, preprocessors, action
    unsquashing/clipping."""
    from ray.rllib.env.multi_agent_env import MultiAgentEnv
    from ray.rllib.env.wrappers.atari_wrappers import is_atari, wrap_deepmind
    from ray.rllib.models import ModelCatalog
    from ray.rllib.utils.spaces.space_utils import clip_action, unsquash_action

    from rllib_saliency.recurrent import initial_states, next_step_inputs, recurrent_layout

    if config.get("observation_filter", "NoFilter") != "NoFilter":
        raise CLIError(
            f"the policy was trained with observation_filter={config['observation_filter']!r}, whose "
            "state a policy checkpoint does not hold; use the algorithm checkpoint, or --obs FILE with "
            "filtered observations."
        )
    env = _make_env(config)
    if isinstance(env, MultiAgentEnv):
        raise CLIError(
            "rolling out a multi-agent environment needs the algorithm checkpoint, not a policy one."
        )
    model_config = config.get("model") or {}
    preprocessor = None
    if is_atari(env) and config.get("preprocessor_pref", "deepmind") == "deepmind":
        env = wrap_deepmind(
            env,
            dim=model_config.get("dim"),
            framestack=model_config.get("framestack") is True,
            noframeskip=(config.get("env_config") or {}).get("frameskip", 0) == 1,
        )
    elif config.get("preprocessor_pref", "deepmind") is not None:
        preprocessor = ModelCatalog.get_preprocessor_for_space(env.observation_space, model_config)
    observations, actions, episode_ids, states = [], [], [], []
    layout = recurrent_layout(policy)
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + episode)
            # The step inputs besides the observation: [] unless the model is recurrent.
            inputs = [s[0] for s in initial_states(policy, 1)]
            finished = False
            while not finished:
                seen = preprocessor.transform(obs) if preprocessor is not None else np.asarray(obs)
                state, previous = layout.split(inputs) if inputs else ([], {})
                action, state_out, _ = policy.compute_single_action(
                    seen,
                    state=state or None,
                    prev_action=previous.get("prev_actions"),
                    prev_reward=previous.get("prev_rewards"),
                    explore=False,
                )
                observations.append(seen)
                actions.append(action)
                episode_ids.append(episode)
                if inputs:
                    states.append(inputs)
                if config.get("normalize_actions", True):
                    env_action = unsquash_action(action, policy.action_space_struct)
                elif config.get("clip_actions", False):
                    env_action = clip_action(action, policy.action_space_struct)
                else:
                    env_action = action
                obs, reward, terminated, truncated, _ = env.step(env_action)
                finished = terminated or truncated
                if inputs:
                    inputs = next_step_inputs(layout, inputs, state_out, action, reward)
            bar.update(1)
    finally:
        env.close()
    policy_id = str(policy.config.get("__policy_id") or "default_policy")
    batch_states = [[np.stack(column) for column in zip(*states, strict=True)]] if states else []
    return _collect(
        [np.stack(observations)],
        [np.asarray(actions)],
        [np.asarray(episode_ids)],
        episodes,
        policy_id,
        batch_states,
    )


# ----- outputs ---------------------------------------------------------------------------------


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _load_obs_file(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise CLIError(f"--obs {path!r}: no such file.")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise CLIError(f"--obs {path!r}: not a numpy .npy/.npz file ({error}).") from error
    if isinstance(data, np.lib.npyio.NpzFile):
        if "observations" not in data.files:
            raise CLIError(f"--obs {path!r}: an .npz needs an 'observations' array; it has {data.files}.")
        data = data["observations"]
    return np.asarray(data)


def _check_obs_shape(obs: np.ndarray, shape: tuple[int, ...], policy_id: str, source: str) -> np.ndarray:
    if obs.dtype.kind not in "biuf" or obs.shape[1:] != shape or obs.ndim != len(shape) + 1 or not len(obs):
        raise CLIError(
            f"{source}: observations have shape {obs.shape} (dtype {obs.dtype}), but policy {policy_id!r} "
            f"takes a batch (N, {', '.join(map(str, shape))}) of preprocessed observations as in its "
            "sample batches."
        )
    return obs.astype(np.float32)


def _feature_names(arg: str | None, layout_names: list[str], size: int) -> list[str]:
    if arg is None:
        return layout_names
    names = [n.strip() for n in arg.split(",")]
    if len(names) != size:
        raise CLIError(
            f"--feature-names has {len(names)} names, but the observations have {size} features "
            f"(default names: {', '.join(layout_names)})."
        )
    return names


def _write_png(path: str, png: bytes, written: list[str]) -> None:
    with open(path, "wb") as file:
        file.write(png)
    written.append(path)


# ----- commands ------------------------------------------------------------------------------


@dataclass
class Context:
    """What both commands share once the checkpoint is loaded."""

    args: argparse.Namespace
    checkpoint: Checkpoint
    policy: Any
    observations: np.ndarray | None
    actions: np.ndarray | None
    episode_ids: np.ndarray | None
    states: tuple[np.ndarray, ...]
    source: str
    timings: dict[str, float]
    step: int
    notes: list[str] = field(default_factory=list)


def _progress(args: argparse.Namespace, **kwargs: Any) -> Any:
    from tqdm import tqdm

    return tqdm(file=sys.stderr, disable=args.quiet, dynamic_ncols=True, **kwargs)


def _import_modules(modules: Sequence[str]) -> None:
    # Console scripts do not put the current directory on the import path; `python -m` does.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name and (module == error.name or module.startswith(error.name + ".")):
                raise CLIError(
                    f"--import {module}: no module named {error.name!r} on the import path; run from "
                    "the directory that holds it or add that directory to PYTHONPATH."
                ) from error
            raise CLIError(f"--import {module}: importing it failed: {error}.") from error
        except Exception as error:  # noqa: BLE001 - the user's module failed; say which and why
            raise CLIError(
                f"--import {module}: importing it raised {type(error).__name__}: {error}. "
                "(Run with --debug for the traceback.)"
            ) from error


def _run(args: argparse.Namespace, compute: Callable[[Context], list[str]], needs_data: bool) -> int:
    started = time.perf_counter()
    if not args.verbose:
        # RLlib's warnings (deprecations, "install gputil") are noise for this command.
        logging.getLogger("ray").setLevel(logging.ERROR)
    _import_modules(args.imports)
    checkpoint = inspect_checkpoint(args.checkpoint, args.policy)
    obs_file = _load_obs_file(args.obs) if args.obs else None
    episodes = DEFAULT_EPISODES if args.episodes is None else args.episodes
    if obs_file is None and episodes < (1 if needs_data else 0):
        raise CLIError(
            f"--episodes must be at least {1 if needs_data else 0}; got {episodes} "
            "(or pass observations with --obs FILE)."
        )
    rollout = obs_file is None and episodes > 0
    args.check(args, checkpoint)
    if getattr(args, "init", None) == "samples" and obs_file is None and not rollout:
        raise CLIError(
            "--init samples starts from observations: roll out with --episodes N (N >= 1) or pass "
            "--obs FILE; or use --init random."
        )
    if obs_file is not None and checkpoint.obs_shape is not None:
        _check_obs_shape(obs_file, checkpoint.obs_shape, checkpoint.policy_id, f"--obs {args.obs}")
    # Checks that need no Ray and no TensorFlow objects: fail fast.
    if rollout:
        _check_environment(checkpoint.config)
    _check_custom_code(checkpoint.config)
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as error:
        raise CLIError(f"--out {args.out!r}: cannot create it ({error}).") from error

    import ray

    ray.init(
        address="local",
        num_cpus=args.num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.INFO if args.verbose else logging.ERROR,
    )
    algorithm = None
    try:
        timings: dict[str, float] = {}
        load_started = time.perf_counter()
        observations = actions = episode_ids = None
        states: tuple[np.ndarray, ...] = ()
        if rollout and checkpoint.kind == "Algorithm":
            algorithm = build_algorithm(checkpoint, args.seed)
            policy = algorithm.get_policy(checkpoint.policy_id)
        else:
            policy = load_policy(checkpoint)
        timings["load"] = time.perf_counter() - load_started
        if obs_file is not None:
            shape = tuple(policy.observation_space.shape)
            observations = _check_obs_shape(obs_file, shape, checkpoint.policy_id, f"--obs {args.obs}")
            source = f"{len(observations)} observations from {args.obs}"
        elif rollout:
            rollout_started = time.perf_counter()
            with _progress(args, total=episodes, desc="rollout", unit="episode") as bar:
                if algorithm is not None:
                    rollouts = rollout_algorithm(algorithm, checkpoint.policy_id, episodes, bar)
                else:
                    rollouts = rollout_policy(policy, checkpoint.config, episodes, args.seed, bar)
            timings["rollout"] = time.perf_counter() - rollout_started
            observations, actions, episode_ids = rollouts.observations, rollouts.actions, rollouts.episode_ids
            states = rollouts.states
            source = f"{len(observations)} observations from {episodes} greedy episode(s)"
        else:
            source = "no observations"
        context = Context(
            args=args,
            checkpoint=checkpoint,
            policy=policy,
            observations=observations,
            actions=actions,
            episode_ids=episode_ids,
            states=states,
            source=source,
            timings=timings,
            step=args.step if args.step is not None else checkpoint.step,
        )
        written = compute(context)
    finally:
        if algorithm is not None:
            algorithm.stop()
        ray.shutdown()
    timings["total"] = time.perf_counter() - started
    _print_summary(context, written, timings)
    return 0


def _print_summary(context: Context, written: list[str], timings: dict[str, float]) -> None:
    print(f"{PROG} {context.args.command}: policy {context.checkpoint.policy_id!r}, {context.source}")
    for note in context.notes:
        print(note)
    print("wrote:")
    for path in written:
        print(f"  {path}")
    parts = [f"{name} {seconds:.2f} s" for name, seconds in timings.items() if name not in ("total", "cost")]
    print(f"time: {timings['total']:.2f} s total ({', '.join(parts)})")
    if "cost" in timings:
        print(f"cost: {timings['cost']}")
    print(f"view: tensorboard --logdir {context.args.out}")


def _duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{1e3 * seconds:.2f} ms"
    return f"{1e6 * seconds:.1f} µs"


def _library_call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Our own functions raise ValueError with a user-facing message for bad options."""
    try:
        return function(*args, **kwargs)
    except ValueError as error:
        raise CLIError(str(error)) from error


def _parse_method_options(items: Sequence[str]) -> dict[str, Any]:
    options = {}
    for item in items:
        key, separator, text = item.partition("=")
        if not separator or not key:
            raise CLIError(f"--method-option {item!r}: write KEY=VALUE, e.g. steps=16 or baseline=mean.")
        try:
            options[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            options[key] = text  # a bare word such as baseline=mean
    return options


def _greedy_actions(policy: Any, obs: np.ndarray) -> np.ndarray:
    """The policy's greedy actions at ``obs`` (recurrent models: from their initial state)."""
    from ray.rllib.policy.sample_batch import SampleBatch

    from rllib_saliency.recurrent import initial_states, recurrent_layout

    names = recurrent_layout(policy).names
    actions = []
    for start in range(0, len(obs), 1024):
        rows = obs[start : start + 1024]
        # An input dict, not compute_actions(state_batches=...): in Ray 2.60 the eager
        # policies' compute_actions drops the state batches.
        batch = {"obs": rows, **dict(zip(names, initial_states(policy, len(rows)), strict=True))}
        if names:
            batch["seq_lens"] = np.ones(len(rows), np.int32)
        actions.append(policy.compute_actions_from_input_dict(SampleBatch(batch), explore=False)[0])
    return np.concatenate(actions)


def _positive(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        if getattr(args, name) < 1:
            raise CLIError(
                f"--{name.replace('_', '-')} must be a positive integer; got {getattr(args, name)}."
            )


def _check_target(target: str, checkpoint: Checkpoint) -> None:
    from rllib_saliency.targets import parse_target

    if checkpoint.action_space is not None:
        _library_call(parse_target, target, checkpoint.action_space)


def _check_explain(args: argparse.Namespace, checkpoint: Checkpoint) -> None:
    """Arguments checked before Ray starts and the policy loads (when the spec tells enough)."""
    from rllib_saliency.methods import get_method

    _positive(args, "batch_size", "num_cpus")
    if args.max_images < 0:
        raise CLIError(f"--max-images must be 0 or more; got {args.max_images}.")
    _check_target(args.target, checkpoint)
    if checkpoint.obs_shape is not None:
        options = _parse_method_options(args.method_option)
        _library_call(get_method(args.method).check_options, options, checkpoint.obs_shape)


def _check_maximize(args: argparse.Namespace, checkpoint: Checkpoint) -> None:
    _positive(args, "steps", "n_starts", "num_cpus")
    for name, positive in (("lr", True), ("l2", False), ("tv", False)):
        value = getattr(args, name)
        if not np.isfinite(value) or value < 0 or (positive and value == 0):
            raise CLIError(
                f"--{name} must be a {'positive' if positive else 'non-negative'} number; got {value}."
            )
    if args.tv > 0 and checkpoint.obs_shape is not None and len(checkpoint.obs_shape) != 3:
        raise CLIError(
            f"--tv (total variation) applies to image observations (H, W, C); policy "
            f"{checkpoint.policy_id!r} observes shape {checkpoint.obs_shape}: leave --tv at 0."
        )
    _check_target(args.target, checkpoint)


def _explain(context: Context) -> list[str]:
    from rllib_saliency import render
    from rllib_saliency.engine import Attribution, explain
    from rllib_saliency.methods import get_method
    from rllib_saliency.recurrent import recurrent_layout
    from rllib_saliency.summaries import feature_layout, merge, summarize
    from rllib_saliency.writer import SaliencyWriter

    args, policy, pid = context.args, context.policy, context.checkpoint.policy_id
    obs = context.observations
    obs_shape = tuple(policy.observation_space.shape)
    options = _parse_method_options(args.method_option)
    checked = _library_call(get_method(args.method).check_options, options, obs_shape)
    # explain() takes "mean" baselines and SmoothGrad's noise scale from the batch it is
    # given: pass the mean of all observations explicitly, and give SmoothGrad everything
    # at once, so that the chunks (for the progress bar) add up to one explain() call.
    finite = np.all(np.isfinite(obs.reshape(len(obs), -1)), axis=1)
    if not finite.any():
        raise CLIError("every observation has NaN/inf values: nothing to explain.")
    call_options = dict(options)
    if isinstance(checked.get("baseline"), str) and checked["baseline"] == "mean" and finite.any():
        call_options["baseline"] = obs[finite].mean(axis=0)
    chunk = len(obs) if args.method == "smoothgrad" else args.batch_size
    values = np.empty(obs.shape, np.float32)
    target_values = np.empty(len(obs), np.float32)
    delta = None
    compute_started = time.perf_counter()
    with _progress(context.args, total=len(obs), desc=f"{args.method}/{args.target}", unit="obs") as bar:
        for start in range(0, len(obs), chunk):
            rows = slice(start, start + chunk)
            part = _library_call(
                explain,
                policy,
                obs[rows],
                args.method,
                args.target,
                batch_size=args.batch_size,
                # Recurrent models: the state each step was taken in (initial state for --obs).
                state=tuple(s[rows] for s in context.states) if context.states else None,
                **call_options,
            )
            values[rows], target_values[rows] = part.values, part.target_values
            if part.delta is not None:
                delta = np.empty(len(obs), np.float32) if delta is None else delta
                delta[rows] = part.delta
            bar.update(len(obs[rows]))
    seconds = time.perf_counter() - compute_started
    context.timings["attribution"] = seconds
    context.timings["cost"] = f"{_duration(seconds / len(obs))} per observation"  # type: ignore[assignment]
    attribution = Attribution(
        values=values,
        target_values=target_values,
        method=args.method,
        target=args.target,
        observations=obs,
        delta=delta,
        options=checked,
    )
    actions = context.actions
    if actions is None:
        actions = _greedy_actions(policy, obs)

    layout = feature_layout(policy.observation_space)
    rng = np.random.default_rng(args.seed)
    max_images = args.max_images if len(obs_shape) == 3 else 0
    (summary,) = merge([summarize(attribution, pid, rng, layout.parts, max_images)], max_images)
    names = _feature_names(args.feature_names, layout.names, len(summary.mean_abs))
    shares: dict[str, float] = {}
    total = float(summary.mean_abs.sum())
    if layout.top_keys is not None and total > 0:
        for key, value in zip(layout.top_keys, summary.mean_abs, strict=True):
            shares[key] = shares.get(key, 0.0) + float(value) / total

    written: list[str] = []
    stem = f"{_safe(pid)}_{_safe(args.target)}_{_safe(args.method)}"
    npz_path = os.path.join(args.out, f"attributions_{stem}.npz")
    np.savez_compressed(
        npz_path,
        observations=obs,
        actions=np.asarray(actions),
        attributions=values,
        target_values=target_values,
        **({"delta": delta} if delta is not None else {}),
        **({"episode_ids": context.episode_ids} if context.episode_ids is not None else {}),
        **dict(zip(recurrent_layout(policy).names, context.states, strict=False)),
        feature_names=np.asarray(names),
        mean_abs=summary.mean_abs,
        policy_id=np.asarray(pid),
        method=np.asarray(args.method),
        target=np.asarray(args.target),
        options=np.asarray(json.dumps({k: repr(v) for k, v in options.items()})),
        checkpoint=np.asarray(context.checkpoint.path),
        step=np.asarray(context.step),
    )
    written.append(npz_path)

    title = f"{pid} / {args.target} / {args.method}"
    if summary.map_values is not None:
        importance = render.saliency_grid(
            summary.map_observations, summary.map_values, title, args.frame_maps
        )
    else:
        importance = render.importance_chart(summary.mean_abs, names, title)
    _write_png(os.path.join(args.out, f"importance_{stem}.png"), importance[0], written)

    prefix = f"saliency/{pid}/{args.target}/{args.method}"
    before = set(os.listdir(args.out))
    writer = SaliencyWriter(args.out)
    scalars = {f"{prefix}/mean_abs/{name}": v for name, v in zip(names, summary.mean_abs, strict=True)}
    scalars.update({f"{prefix}/share/{key}": v for key, v in shares.items()})
    writer.scalars(scalars, context.step)
    flat = values[finite].reshape(-1)
    sample = flat if len(flat) <= HISTOGRAM_LIMIT else rng.choice(flat, HISTOGRAM_LIMIT, replace=False)
    if len(sample):
        writer.histogram(
            f"{prefix}/distribution", sample, np.full(len(sample), len(flat) / len(sample)), context.step
        )
    writer.image(f"{prefix}/importance", *importance, context.step)
    writer.close()
    written += [os.path.join(args.out, name) for name in sorted(set(os.listdir(args.out)) - before)]
    return written


def _maximize(context: Context) -> list[str]:
    from rllib_saliency import render
    from rllib_saliency.activation import maximize_activation
    from rllib_saliency.summaries import feature_layout
    from rllib_saliency.writer import SaliencyWriter

    args, policy, pid = context.args, context.policy, context.checkpoint.policy_id
    obs_shape = tuple(policy.observation_space.shape)
    compute_started = time.perf_counter()
    with _progress(args, total=args.steps, desc=f"maximize {args.target}", unit="step") as bar:
        result = _library_call(
            maximize_activation,
            policy,
            args.target,
            init=args.init,
            obs=context.observations,
            steps=args.steps,
            lr=args.lr,
            l2=args.l2,
            tv=args.tv,
            n_starts=args.n_starts,
            seed=args.seed,
            progress=lambda step: bar.update(1),
        )
    seconds = time.perf_counter() - compute_started
    context.timings["maximize"] = seconds
    context.timings["cost"] = (  # type: ignore[assignment]
        f"{_duration(seconds / args.steps)} per step for {len(result.inputs)} starting point(s)"
    )
    written: list[str] = []
    stem = f"{_safe(pid)}_{_safe(args.target)}"
    npz_path = os.path.join(args.out, f"actmax_{stem}.npz")
    observations = context.observations
    if observations is None:
        observations = np.zeros((0, *obs_shape), np.float32)
    np.savez_compressed(
        npz_path,
        inputs=result.inputs,
        starts=result.starts,
        target_values=result.target_values,
        objective=result.objective,
        low=result.low,
        high=result.high,
        mean=result.mean,
        observations=observations,
        policy_id=np.asarray(pid),
        target=np.asarray(args.target),
        options=np.asarray(json.dumps(result.options)),
        checkpoint=np.asarray(context.checkpoint.path),
        step=np.asarray(context.step),
    )
    written.append(npz_path)

    best = result.best
    title = f"{pid} / {args.target}: activation maximization (best of {len(result.inputs)})"
    if len(obs_shape) == 1:
        names = _feature_names(
            args.feature_names, feature_layout(policy.observation_space).names, obs_shape[0]
        )
        picture = render.activation_chart(
            result.inputs[best], result.mean, result.low, result.high, names, title
        )
    elif len(obs_shape) == 3:
        picture = render.activation_images(result.inputs[best], result.mean, result.low, result.high, title)
    else:
        picture = None
    if picture is not None:
        _write_png(os.path.join(args.out, f"actmax_{stem}.png"), picture[0], written)

    before = set(os.listdir(args.out))
    writer = SaliencyWriter(args.out)
    prefix = f"saliency/{pid}/actmax/{args.target}"
    writer.scalars({f"{prefix}/value": float(result.target_values[-1].mean())}, context.step)
    if picture is not None:
        writer.image(f"{prefix}/input", *picture, context.step)
    writer.close()
    written += [os.path.join(args.out, name) for name in sorted(set(os.listdir(args.out)) - before)]
    context.notes.append(
        f"target {args.target!r}: {result.target_values[0].mean():.4g} at the starting points -> "
        f"{result.target_values[-1].mean():.4g} after {args.steps} steps (mean over "
        f"{len(result.inputs)} starting points; best {result.target_values[-1, best]:.4g})"
    )
    return written


# ----- argument parsing ---------------------------------------------------------------------------


def _common_arguments(parser: argparse.ArgumentParser, needs_data: bool) -> None:
    parser.add_argument(
        "checkpoint",
        metavar="CHECKPOINT",
        help="an algorithm checkpoint directory (algo.save(...)) or a policy checkpoint directory "
        "(policy.export_checkpoint(...)); old API stack, framework 'tf' or 'tf2'",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="where files and TensorBoard events go")
    parser.add_argument(
        "--policy",
        metavar="ID",
        help="the policy to analyse (default: 'default_policy', or the only one); an unknown id "
        "lists the available ones",
    )
    data = parser.add_mutually_exclusive_group()
    data.add_argument(
        "--episodes",
        type=int,
        metavar="N",
        help=f"roll out N whole episodes with the trained policy (explore=False) in its own environment "
        f"(default {DEFAULT_EPISODES}"
        + ("" if needs_data else "; 0: no observations, only with --init random")
        + ")",
    )
    data.add_argument(
        "--obs",
        metavar="FILE",
        help="use these observations instead: a .npy array (N, *obs_shape) of preprocessed "
        "observations as in the policy's sample batches, or an .npz with an 'observations' array "
        "(e.g. one this command wrote)",
    )
    parser.add_argument(
        "--import", dest="imports", action="append", default=[], metavar="MODULE", help=IMPORT_HELP
    )
    parser.add_argument(
        "--feature-names",
        metavar="A,B,...",
        help="comma-separated names of the observation features (default f0, f1, ... or Dict key paths)",
    )
    parser.add_argument(
        "--step",
        type=int,
        help="TensorBoard step of the events (default: the checkpoint's sampled env steps, so the "
        "events line up with the training curves)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds the rollouts' environment, the histogram sample and the starting points (default 0)",
    )
    parser.add_argument(
        "--num-cpus",
        type=int,
        default=2,
        help="CPUs of the local Ray instance this command starts (default 2)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--verbose", action="store_true", help="show Ray's and RLlib's log messages")
    parser.add_argument("--debug", action="store_true", help="show a traceback for every error")


def build_parser() -> argparse.ArgumentParser:
    from rllib_saliency.methods import METHODS

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Saliency and activation maximization for RLlib old-API-stack TensorFlow checkpoints.",
        epilog=f"Run '{PROG} COMMAND --help' for the options of a command.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    explain = commands.add_parser(
        "explain",
        help="attribute the policy's outputs to its observations",
        description="Load a checkpoint, roll out N greedy episodes (or read --obs), compute attributions "
        "with rllib_saliency.explain and write attributions_*.npz (observations, actions, "
        "attributions, target values), importance_*.png and TensorBoard events (tags "
        "saliency/{policy}/{target}/{method}/mean_abs/{feature}, .../distribution, "
        ".../importance) into --out. Custom environments or models: --import the module that "
        "registers them.",
    )
    _common_arguments(explain, needs_data=True)
    explain.add_argument(
        "--method", default="gradient", choices=list(METHODS), help="attribution method (default gradient)"
    )
    explain.add_argument(
        "--target",
        default="action",
        help="what to explain: action (greedy logit / mean of action dim 0), action_K, logp (of the "
        "greedy action), value (default action)",
    )
    explain.add_argument(
        "--method-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option of the method, e.g. steps=16, baseline=mean, n_samples=50 (repeatable)",
    )
    explain.add_argument(
        "--batch-size",
        type=int,
        default=1024,
        help="observations per model call and per progress-bar update (default 1024)",
    )
    explain.add_argument(
        "--max-images",
        type=int,
        default=4,
        help="image observations: samples shown in the saliency image (default 4)",
    )
    explain.add_argument(
        "--frame-maps", action="store_true", help="image observations: also show each stacked frame's map"
    )
    explain.set_defaults(compute=_explain, check=_check_explain, needs_data=True)

    maximize = commands.add_parser(
        "maximize",
        help="find observations that maximise a policy output (activation maximization)",
        description="Load a checkpoint, roll out N greedy episodes (or read --obs) for starting points, "
        "the L2 anchor and the search box, run rllib_saliency.maximize_activation and write "
        "actmax_*.npz, actmax_*.png (optimised input next to the data mean) and TensorBoard "
        "events (saliency/{policy}/actmax/{target}/value) into --out. Custom environments or "
        "models: --import the module that registers them.",
    )
    _common_arguments(maximize, needs_data=False)
    maximize.add_argument("--target", required=True, help="what to maximise: action, action_K, logp or value")
    maximize.add_argument(
        "--init",
        default="samples",
        choices=["samples", "random"],
        help="start from observations (samples, default) or uniformly in the search box (random)",
    )
    maximize.add_argument("--steps", type=int, default=200, help="gradient-ascent steps (default 200)")
    maximize.add_argument(
        "--lr",
        type=float,
        default=0.05,
        help="step size as a fraction of each feature's box width (default 0.05)",
    )
    maximize.add_argument(
        "--l2", type=float, default=1e-3, help="weight of the pull toward the data mean (default 1e-3)"
    )
    maximize.add_argument(
        "--tv", type=float, default=0.0, help="weight of total variation, image observations only (default 0)"
    )
    maximize.add_argument(
        "--n-starts", type=int, default=8, help="starting points optimised at once (default 8)"
    )
    maximize.set_defaults(compute=_maximize, check=_check_maximize, needs_data=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rllib-saliency`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args, args.compute, args.needs_data)
    except CLIError as error:
        if args.debug:
            traceback.print_exc()
        print(f"{PROG} {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
