"""New-API-stack checkpoints (torch RLModules): inspecting them and loading the module.

Two kinds of directory are read:

* an **algorithm** checkpoint, written by ``algo.save_to_path(path)`` / ``algo.save()``
  when ``config.enable_rl_module_and_learner`` is True (the default in Ray 2.60).
  Layout (measured with PPO, Ray 2.60)::

      class_and_ctor_args.pkl      {"class": PPO, "ctor_args_and_kwargs": ((config.get_state(),), {})}
      rllib_checkpoint.json        {"checkpoint_version": "2.1", "state_file": "algorithm_state", ...}
      algorithm_state.pkl          {"metrics_logger": {"stats": ...}, "training_iteration": ...}
      learner_group/learner/rl_module/              the learner's MultiRLModule ...
      learner_group/learner/rl_module/<module_id>/  ... and each full module (value head included)
      env_runner/env_to_module_connector/           the env runner's connector pipelines,
      env_runner/module_to_env_connector/           with their state (e.g. filters)

* an **RLModule** checkpoint, written by ``rl_module.save_to_path(path)`` (a
  ``MultiRLModule``'s too: then ``--policy`` picks the sub-module). It holds no
  environment and no connectors, so it is explained on ``--obs FILE`` only.

Loading reads only what is needed and starts no Ray instance: the learner's full
module (``RLModule.from_checkpoint``; to roll out a multi-agent checkpoint, the learner's
whole ``MultiRLModule``, every agent acting with its mapped module) and, for rollouts, the two connector
pipelines (``EnvToModulePipeline``/``ModuleToEnvPipeline.from_checkpoint``) and the
environment from the saved config. Measured on a PPO CartPole checkpoint (Ray 2.60,
2 busy CPU cores, after the imports): the module and both pipelines loaded in 0.4 s
(0.03 s a second time), where ``ray.init()`` took 9.7 s and ``Algorithm.from_checkpoint``
another 2.5 s; the learner module that the Algorithm restores has the same weights.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from rllib_saliency.errors import IMPORT_HINT, CLIError
from rllib_saliency.stacks.checkpoint import Checkpoint, read_metadata, unpickle

CTOR_FILE = "class_and_ctor_args.pkl"
# Checkpointable component names (ray.rllib.core.COMPONENT_*), spelt out so that
# inspecting a checkpoint does not import RLlib.
MODULES_DIR = os.path.join("learner_group", "learner", "rl_module")
ENV_TO_MODULE_DIR = os.path.join("env_runner", "env_to_module_connector")
MODULE_TO_ENV_DIR = os.path.join("env_runner", "module_to_env_connector")
SAMPLED_STEPS_KEY = "env_runners--num_env_steps_sampled_lifetime"


def _ctor(directory: str) -> dict[str, Any]:
    """A Checkpointable's ``class_and_ctor_args.pkl``: {"class": ..., "ctor_args_and_kwargs": ...}."""
    path = os.path.join(directory, CTOR_FILE)
    try:
        ctor = unpickle(path, peek=False)
    except (EOFError, OSError, ValueError, TypeError) as error:
        raise CLIError(
            f"{path!r} cannot be read ({error or type(error).__name__}); the checkpoint is damaged."
        ) from error
    if not isinstance(ctor, dict) or "class" not in ctor:
        raise CLIError(f"{path!r} is not an RLlib class_and_ctor_args file; the checkpoint is damaged.")
    return ctor


def _ctor_kwargs(ctor: dict[str, Any]) -> dict[str, Any]:
    args_and_kwargs = ctor.get("ctor_args_and_kwargs") or ((), {})
    return dict(args_and_kwargs[1] or {})


def _incomplete(path: str, missing: str, what: str) -> CLIError:
    return CLIError(
        f"{path!r} is a new-API-stack algorithm checkpoint but lacks {missing} ({what}): the "
        "checkpoint is incomplete; pass the whole directory written by algo.save_to_path(...)."
    )


def _module_ids(directory: str) -> list[str]:
    """Sub-module directories of a saved MultiRLModule."""
    return sorted(
        name for name in os.listdir(directory) if os.path.isfile(os.path.join(directory, name, CTOR_FILE))
    )


def _choose_module(path: str, requested: str | None, available: list[str]) -> str:
    listed = ", ".join(repr(m) for m in available)
    if not available:
        raise CLIError(f"{path!r} holds no RLModule: the checkpoint is incomplete.")
    if requested is not None:
        if requested not in available:
            raise CLIError(
                f"--policy {requested!r}: {path!r} has no RLModule with that module id; "
                f"available module ids: {listed}."
            )
        return requested
    if "default_policy" in available:
        return "default_policy"
    if len(available) == 1:
        return available[0]
    raise CLIError(f"{path!r} holds several RLModules ({listed}): choose one with --policy MODULE_ID.")


def _spaces(module_dir: str) -> dict[str, Any]:
    """``obs_shape``/``action_space`` from the module's constructor arguments, and its class."""
    import gymnasium as gym

    ctor = _ctor(module_dir)
    kwargs = _ctor_kwargs(ctor)
    observation_space = kwargs.get("observation_space")
    return {
        "obs_shape": tuple(observation_space.shape)
        if isinstance(observation_space, gym.spaces.Box)
        else None,
        "action_space": kwargs.get("action_space"),
        "class": ctor["class"],
    }


def _check_module_class(path: str, cls: Any) -> None:
    from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule

    if not (isinstance(cls, type) and issubclass(cls, TorchRLModule)):
        raise CLIError(
            f"{path!r} holds a {getattr(cls, '__name__', cls)!s}, not a torch RLModule; "
            "rllib-saliency explains torch RLModules on RLlib's new API stack."
        )


def _sampled_steps(path: str) -> int:
    """The algorithm's sampled env steps (lifetime), or its training iteration, or 0."""
    state_file = os.path.join(path, "algorithm_state.pkl")
    if not os.path.isfile(state_file):
        return 0
    try:
        state = unpickle(state_file, peek=False)
    except (EOFError, OSError, ValueError, TypeError, CLIError):
        return 0
    if not isinstance(state, dict):
        return 0
    stats = ((state.get("metrics_logger") or {}).get("stats") or {}).get(SAMPLED_STEPS_KEY)
    if isinstance(stats, dict):
        for key in ("lifetime_sum", "latest_merged"):
            if isinstance(stats.get(key), (int, float, np.number)) and stats[key] > 0:
                return int(stats[key])
    return int(state.get("training_iteration") or 0)


def inspect(path: str, module_id: str | None) -> Checkpoint:
    """A new-API-stack checkpoint (an algorithm's or an RLModule's): pick the module, read its spaces."""
    declared = read_metadata(path).get("checkpoint_version")
    return inspect_new_stack_checkpoint(path, module_id, declared)


def inspect_new_stack_checkpoint(path: str, module_id: str | None, declared: Any) -> Checkpoint:
    """An algorithm or RLModule checkpoint of the new API stack: pick the module, read its spaces."""
    names = os.listdir(path)
    if os.path.isdir(os.path.join(path, "learner_group")) or os.path.isdir(os.path.join(path, "env_runner")):
        return _inspect_algorithm(path, module_id)
    if CTOR_FILE not in names:
        raise CLIError(
            f"{path!r} says it is a new-API-stack checkpoint (version {declared}) but lacks {CTOR_FILE}: "
            "the checkpoint is incomplete."
        )
    from ray.rllib.algorithms.algorithm import Algorithm
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModule

    cls = _ctor(path)["class"]
    if isinstance(cls, type) and issubclass(cls, Algorithm):
        raise _incomplete(path, "learner_group/", "the learner's RLModules")
    if isinstance(cls, type) and issubclass(cls, MultiRLModule):
        available = _module_ids(path)
        chosen = _choose_module(path, module_id, available)
        module_dir = os.path.join(path, chosen)
    else:
        available = ["default_policy"] if module_id is None else [module_id]
        chosen, module_dir = available[0], path
    spaces = _spaces(module_dir)
    _check_module_class(module_dir, spaces.pop("class"))
    info = {"module_dir": module_dir, "multi_agent": len(available) > 1}
    return Checkpoint(path, "RLModule", chosen, available, "torch", {}, 0, info, **spaces, stack="new")


def _inspect_algorithm(path: str, module_id: str | None) -> Checkpoint:
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

    modules_dir = os.path.join(path, MODULES_DIR)
    if not os.path.isdir(modules_dir):
        raise _incomplete(path, MODULES_DIR + "/", "the learner's RLModules")
    available = _module_ids(modules_dir)
    chosen = _choose_module(path, module_id, available)
    module_dir = os.path.join(modules_dir, chosen)
    if not os.path.isfile(os.path.join(path, CTOR_FILE)):
        raise _incomplete(path, CTOR_FILE, "the algorithm's class and config")
    args = (_ctor(path).get("ctor_args_and_kwargs") or ((), {}))[0]
    config = args[0] if args and isinstance(args[0], dict) else {}
    if not config:
        raise CLIError(
            f"{os.path.join(path, CTOR_FILE)!r} holds no algorithm config; the checkpoint is damaged."
        )
    try:
        multi_agent = bool(AlgorithmConfig.from_state(dict(config)).is_multi_agent)
    except Exception:  # noqa: BLE001 - a config class we cannot rebuild: judge by the modules
        multi_agent = len(available) > 1 or available != ["default_policy"]
    spaces = _spaces(module_dir)
    _check_module_class(module_dir, spaces.pop("class"))
    info = {"module_dir": module_dir, "multi_agent": multi_agent}
    return Checkpoint(
        path,
        "Algorithm",
        chosen,
        available,
        "torch",
        config,
        _sampled_steps(path),
        info,
        **spaces,
        stack="new",
    )


def check_rollout(checkpoint: Checkpoint) -> None:
    """Rollouts need the algorithm's environment and connectors: say so before loading anything."""
    from rllib_saliency.stacks.checkpoint import check_environment

    if checkpoint.kind == "RLModule":
        raise CLIError(
            f"{checkpoint.path!r} is an RLModule checkpoint, which holds no environment and no "
            "connectors to roll out with: pass --obs FILE with observations as the module takes them "
            "(after the env-to-module connectors), or the algorithm checkpoint (algo.save_to_path(...))."
        )
    for directory in (ENV_TO_MODULE_DIR, MODULE_TO_ENV_DIR):
        if not os.path.isdir(os.path.join(checkpoint.path, directory)):
            if offline_without_connectors(checkpoint):  # connectors built from the config instead
                break
            raise _incomplete(checkpoint.path, directory + "/", "the env runner's connector pipelines")
    check_environment(checkpoint.config)


def offline_without_connectors(checkpoint: Checkpoint) -> bool:
    """An offline algorithm's checkpoint (BC, MARWIL: no env runners, so no saved connectors),
    rolled out through connectors built from its config; CLIError if its config names no env."""
    from rllib_saliency.stacks.new.offline_env import is_offline_config

    if checkpoint.kind != "Algorithm" or not is_offline_config(checkpoint.config):
        return False
    if checkpoint.config.get("env") is None:
        raise CLIError(
            f"{checkpoint.path!r} is an offline algorithm's checkpoint whose config names no environment "
            "to roll out in: pass observations with --obs FILE."
        )
    return True


def load_module(checkpoint: Checkpoint) -> Any:
    """The learner's full RLModule (value head included) of the chosen module id."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    try:
        module = RLModule.from_checkpoint(checkpoint.info["module_dir"])
    except (ModuleNotFoundError, AttributeError) as error:
        raise CLIError(
            f"the checkpoint refers to code that cannot be found in this process ({error}); {IMPORT_HINT}."
        ) from error
    return module


def load_multi_module(checkpoint: Checkpoint) -> Any:
    """The learner's whole ``MultiRLModule`` (every module id, value heads included), to roll
    out a multi-agent checkpoint with: every agent acts with the module it is mapped to."""
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModule
    from ray.rllib.core.rl_module.rl_module import RLModule

    directory = os.path.join(checkpoint.path, MODULES_DIR)
    try:
        multi_module = RLModule.from_checkpoint(directory)
    except (ModuleNotFoundError, AttributeError) as error:
        raise CLIError(
            f"the checkpoint refers to code that cannot be found in this process ({error}); {IMPORT_HINT}."
        ) from error
    if not isinstance(multi_module, MultiRLModule) or checkpoint.policy_id not in multi_module:
        raise CLIError(
            f"{directory!r} holds a {type(multi_module).__name__} without module "
            f"{checkpoint.policy_id!r}, not the learner's MultiRLModule: the checkpoint is damaged."
        )
    return multi_module


def initial_module_states(module: Any, n: int) -> tuple[np.ndarray, ...]:
    """A stateful module's initial state for ``n`` samples: its state leaves in ``tree.flatten``
    order (the order of :func:`rllib_saliency.recurrent.recurrent_layout`'s names), ``(n, ...)`` each."""
    from rllib_saliency.recurrent import initial_state_arrays

    return tuple(
        np.repeat(np.asarray(leaf, np.float32)[None], n, axis=0) for leaf in initial_state_arrays(module)
    )


def obs_file_states(path: str | None, module: Any, n: int) -> tuple[np.ndarray, ...]:
    """The states a stateful module explains ``--obs`` observations in: those an ``.npz`` holds
    under the module's state names (``state_in_h``, ``state_in_c``, ... as ``explain`` writes
    them), else the initial state for every observation (each a first step of an episode)."""
    from rllib_saliency.recurrent import recurrent_layout

    layout = recurrent_layout(module)
    names = [i.name for i in layout.inputs]
    arrays: dict[str, np.ndarray] = {}
    data = np.load(path, allow_pickle=False) if path is not None else None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            arrays = {name: np.asarray(data[name]) for name in names if name in data.files}
    held = list(arrays)
    if not held:
        return initial_module_states(module, n)
    if len(held) != len(names):
        missing = [name for name in names if name not in held]
        raise CLIError(
            f"--obs {path!r} holds some of the module's states but not {missing}: give all of "
            f"{names} (the state each observation's step was taken in) or none (initial state)."
        )
    states = []
    for step_input in layout.inputs:
        array = arrays[step_input.name]
        expected = (n, *step_input.shape)
        if array.shape != expected or array.dtype.kind not in "biuf":
            raise CLIError(
                f"--obs {path!r}: {step_input.name!r} has shape {array.shape} (dtype {array.dtype}); "
                f"module states take one {step_input.shape} array per observation, {expected}."
            )
        states.append(array.astype(np.float32))
    return tuple(states)


def greedy_actions(module: Any, obs: np.ndarray, states: tuple[np.ndarray, ...] = ()) -> np.ndarray:
    """The module's greedy actions at ``obs``, as RLlib's GetActions connector picks them with
    explore=False: ``forward_inference``, then the inference distribution's deterministic sample.
    Stateful modules: one step from ``states`` (the state leaves per observation), else from
    the initial state."""
    import torch
    from ray.rllib.core.columns import Columns

    from rllib_saliency.backends.torch import module_device, step_batch

    structure = module.get_initial_state() if module.is_stateful() else None
    if structure is not None and not states:
        states = initial_module_states(module, len(obs))
    actions = []
    for start in range(0, len(obs), 1024):
        rows = torch.as_tensor(obs[start : start + 1024], device=module_device(module))
        batch = step_batch(structure, rows, tuple(s[start : start + 1024] for s in states))
        outputs = module.forward_inference(batch)
        if Columns.ACTIONS in outputs:
            chosen = outputs[Columns.ACTIONS]
        else:
            dist = module.get_inference_action_dist_cls().from_logits(outputs[Columns.ACTION_DIST_INPUTS])
            chosen = dist.to_deterministic().sample()
        if structure is not None:  # one time step
            chosen = chosen[:, 0]
        actions.append(chosen.detach().cpu().numpy())
    return np.concatenate(actions)
