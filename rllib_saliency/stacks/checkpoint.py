"""What every stack's checkpoint reading shares: the :class:`Checkpoint` record, state files
read without TensorFlow, which stack a directory belongs to, the feature names training saved, and
the environment checks before a rollout.

:func:`rllib_saliency.stacks.inspect_checkpoint` validates the directory here, then asks the
checkpoint's stack (``stacks/old/checkpoint.py``: TF policies; ``stacks/new/checkpoint.py``:
torch RLModules) to read its config and pick the policy, and to load it later.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from dataclasses import dataclass, field
from typing import Any

from rllib_saliency.errors import IMPORT_HINT, CLIError


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


def checkpoint_help(path: str) -> str:
    return (
        f"{path!r} is not an RLlib checkpoint directory: pass the directory written by "
        "algo.save(...) or algo.save_to_path(...) (old API stack: it holds rllib_checkpoint.json, "
        "algorithm_state.pkl and policies/; new API stack: class_and_ctor_args.pkl, learner_group/ "
        "and env_runner/), by policy.export_checkpoint(...) (it holds policy_state.pkl) or by "
        "rl_module.save_to_path(...) (it holds class_and_ctor_args.pkl and module_state.pkl)"
    )


def read_metadata(path: str) -> dict[str, Any]:
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
    declared = read_metadata(path).get("checkpoint_version")
    return "class_and_ctor_args.pkl" in os.listdir(path) or (
        declared is not None and version.Version(str(declared)) >= version.Version("2.0")
    )


def check_directory(path: str) -> str:
    """``path`` as an absolute path, once it is an existing directory (else a CLIError saying what
    a checkpoint directory is)."""
    if not os.path.exists(path):
        raise CLIError(f"{path!r} does not exist; {checkpoint_help(path).split(': ', 1)[1]}.")
    if not os.path.isdir(path):
        raise CLIError(checkpoint_help(path) + ".")
    return os.path.abspath(path)


def with_feature_names(checkpoint: Checkpoint) -> Checkpoint:
    checkpoint.feature_names = saved_feature_names(checkpoint.config, checkpoint.policy_id)
    return checkpoint


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
