"""Reading a checkpoint before building anything, then loading its policy or algorithm.

:func:`inspect_checkpoint` validates the directory, reads the config (TensorFlow
objects in state files are stood in for, so TF's execution mode is not fixed too
early) and picks the policy; :func:`load_policy` / :func:`build_algorithm` then
build it with its trained weights.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rllib_saliency.cli.errors import IMPORT_HINT, SUPPORTED, CLIError


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


def unpickle(path: str, peek: bool) -> Any:
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
    kind: str  # "Algorithm", "Policy" (old API stack) or "RLModule" (new API stack)
    policy_id: str
    policy_ids: list[str]
    framework: str
    # The selected policy's config (env, model, filters, ...); new API stack: the algorithm's
    # (AlgorithmConfig.get_state()), {} for an RLModule checkpoint.
    config: dict[str, Any]
    step: int
    info: dict[str, Any] = field(default_factory=dict)
    # The policy's spaces as its saved spec tells (None if it cannot: then arguments that
    # depend on them are checked after the policy is loaded).
    obs_shape: tuple[int, ...] | None = None
    action_space: Any = None
    # "old": TF policies (Policy API); "new": torch RLModules (RLModule/Learner, connectors).
    stack: str = "old"
    # The policy's feature names as the training callback had them (SaliencyCallbacks.configure's
    # feature_names, kept in the saved config), if any.
    feature_names: list[str] | None = None


# Config keys that hold the callbacks class: AlgorithmConfig.get_state() (new stack, and the old
# stack's algorithm state) and a policy's config dict (old stack).
CALLBACK_KEYS = ("callbacks_class", "callbacks")


def saved_feature_names(config: dict[str, Any], policy_id: str) -> list[str] | None:
    """Feature names of a policy from the training callback's settings in a saved config.

    ``SaliencyCallbacks.configure(...)`` returns ``functools.partial(SaliencyCallbacks,
    settings=...)``, which RLlib pickles with the config; the new stack also takes a list
    of callback classes. Names are one list for every policy or ``{policy_id: [...]}``.
    """
    import functools
    import sys

    # Unpickling a config that holds our callbacks imported them; otherwise there is nothing to
    # find (and importing them would import RLlib's callbacks for nothing).
    callbacks_module = sys.modules.get("rllib_saliency.callbacks")
    if callbacks_module is None:
        return None
    SaliencyCallbacks = callbacks_module.SaliencyCallbacks  # noqa: N806
    SaliencySettings = callbacks_module.SaliencySettings  # noqa: N806
    for key in CALLBACK_KEYS:
        value = config.get(key)
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if not (
                isinstance(item, functools.partial)
                and isinstance(item.func, type)
                and issubclass(item.func, SaliencyCallbacks)
            ):
                continue
            settings = item.keywords.get("settings")
            names = settings.feature_names if isinstance(settings, SaliencySettings) else None
            if isinstance(names, dict):
                names = names.get(policy_id)
            if names is not None:
                return [str(name) for name in names]
    return None


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
        "algo.save(...) or algo.save_to_path(...) (old API stack: it holds rllib_checkpoint.json, "
        "algorithm_state.pkl and policies/; new API stack: class_and_ctor_args.pkl, learner_group/ "
        "and env_runner/), by policy.export_checkpoint(...) (it holds policy_state.pkl) or by "
        "rl_module.save_to_path(...) (it holds class_and_ctor_args.pkl and module_state.pkl)"
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


def is_new_stack_checkpoint(path: str) -> bool:
    """Whether ``path`` is a new-API-stack checkpoint, from the folder alone (no RLlib import):
    Checkpointable.save_to_path (an algorithm's or an RLModule's) writes class_and_ctor_args.pkl,
    and an algorithm's metadata says version >= 2.0."""
    from packaging import version

    if not os.path.isdir(path):
        return False
    declared = _read_metadata(path).get("checkpoint_version")
    return "class_and_ctor_args.pkl" in os.listdir(path) or (
        declared is not None and version.Version(str(declared)) >= version.Version("2.0")
    )


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
    if is_new_stack_checkpoint(path):
        from rllib_saliency.cli.new_stack import inspect_new_stack_checkpoint

        declared = _read_metadata(path).get("checkpoint_version")
        return _with_feature_names(inspect_new_stack_checkpoint(path, policy_id, declared))
    if not any(
        name in ("rllib_checkpoint.json", "algorithm_state.pkl", "policy_state.pkl")
        or re.fullmatch(r"checkpoint-\d+", name)
        for name in names
    ):
        raise CLIError(_checkpoint_help(path) + ".")
    try:
        info = get_checkpoint_info(path)
    except (ValueError, OSError) as error:
        raise CLIError(f"{_checkpoint_help(path)} ({error}).") from error
    checkpoint_version = info["checkpoint_version"]
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
        return _with_feature_names(_inspect_policy_checkpoint(path, policy_id, info))
    return _with_feature_names(_inspect_algorithm_checkpoint(path, policy_id, info))


def _with_feature_names(checkpoint: Checkpoint) -> Checkpoint:
    checkpoint.feature_names = saved_feature_names(checkpoint.config, checkpoint.policy_id)
    return checkpoint


def _check_framework(path: str, config: dict[str, Any]) -> str:
    if config.get("enable_rl_module_and_learner") or config.get("_enable_new_api_stack"):
        raise CLIError(
            f"{path!r} was trained on RLlib's new API stack but saved in the old checkpoint format. "
            f"{SUPPORTED}."
        )
    # AlgorithmConfig.to_dict() says "framework_str", a policy's config "framework".
    framework = config.get("framework_str") or config.get("framework") or "tf"
    if framework not in ("tf", "tf2"):
        raise CLIError(
            f"{path!r} was trained with framework {framework!r} on the old API stack, which "
            f"rllib-saliency does not support. {SUPPORTED}."
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
    state = unpickle(info["state_file"], peek=True)
    config = state.get("config") or {}
    if not isinstance(config, dict):
        config = dict(getattr(config, "to_dict", lambda: {})())
    framework = _check_framework(path, config)
    available = sorted(info.get("policy_ids") or (state.get("worker") or {}).get("policy_ids") or [])
    chosen = _choose_policy(path, policy_id, available)
    policy_file = os.path.join(path, "policies", chosen, "policy_state.pkl")
    if not os.path.isfile(policy_file):
        raise CLIError(f"{path!r} lacks {policy_file!r}: the checkpoint is incomplete.")
    policy_state = unpickle(policy_file, peek=True)
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
    state = unpickle(info["state_file"], peek=True)
    config = (state.get("policy_spec") or {}).get("config") or {}
    framework = _check_framework(path, config)
    own_id = str(config.get("__policy_id") or "default_policy")
    chosen = _choose_policy(path, policy_id, [own_id])
    step = int(np.asarray(state.get("global_timestep", 0)))
    return Checkpoint(path, "Policy", chosen, [own_id], framework, config, step, info, **_spec_spaces(state))


def check_custom_code(config: dict[str, Any]) -> None:
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


def check_environment(config: dict[str, Any]) -> None:
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


def env_error(config: dict[str, Any], error: BaseException) -> CLIError:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return CLIError(f"environment {config.get('env')!r} cannot be created ({first_line}); {IMPORT_HINT}.")


def use_framework(framework: str) -> None:
    """Put TensorFlow in the mode RLlib builds a ``framework`` policy in, before any TF object exists.

    RLlib switches TensorFlow to graph mode only when it is the first to import it. A user's
    module that imports TensorFlow itself (``--import mymodels`` with ``import tensorflow as
    tf`` at the top, the usual custom model) leaves TF eager, and ``Policy.from_state`` then
    fails on a "tf" policy's placeholders. So the mode is set here from the checkpoint's
    framework, whatever imported TensorFlow first.
    """
    from ray.rllib.utils.framework import try_import_tf

    tf1, _, _ = try_import_tf(error=True)
    if framework == "tf2":
        if not tf1.executing_eagerly():
            try:
                tf1.enable_eager_execution()
            except ValueError as error:  # TF: graph mode was used already in this process
                raise CLIError(
                    f"the checkpoint's policy runs eagerly (framework 'tf2'), but TensorFlow was "
                    f"already used in graph mode in this process ({error}); --import modules "
                    "must not create TensorFlow objects when imported."
                ) from error
    elif tf1.executing_eagerly():
        # What RLlib's own first import of TensorFlow does (ray.rllib.utils.framework).
        tf1.disable_v2_behavior()
        tf1.enable_resource_variables()


def load_policy(checkpoint: Checkpoint) -> Any:
    """The checkpoint's selected policy, with its trained weights (no environment needed)."""
    from ray.rllib.policy.policy import Policy

    use_framework(checkpoint.framework)
    check_custom_code(checkpoint.config)
    if checkpoint.kind == "Policy":
        state = unpickle(checkpoint.info["state_file"], peek=False)
    else:
        state = unpickle(
            os.path.join(checkpoint.path, "policies", checkpoint.policy_id, "policy_state.pkl"), peek=False
        )
    return Policy.from_state(state)


def build_algorithm(checkpoint: Checkpoint, seed: int) -> Any:
    """The algorithm, rebuilt for greedy rollouts on the driver only (no remote env runners)."""
    from ray.rllib.algorithms.algorithm import Algorithm
    from ray.rllib.utils.error import EnvError

    use_framework(checkpoint.framework)
    check_environment(checkpoint.config)
    check_custom_code(checkpoint.config)
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
        raise env_error(checkpoint.config, error) from error
