"""Old-API-stack checkpoints (TF policies): reading them before building anything, then loading
the policy or building the algorithm's env runner (the CLI's rollouts; no Ray).

:func:`inspect` reads the config (TensorFlow objects in state files are stood in for, so TF's
execution mode is not fixed too early) and picks the policy; :func:`load_policy` /
:func:`build_env_runner` (or :func:`build_algorithm`, which needs Ray) then build it with its
trained weights.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from rllib_saliency.errors import IMPORT_HINT, SUPPORTED, CLIError
from rllib_saliency.stacks.checkpoint import (
    Checkpoint,
    check_environment,
    checkpoint_help,
    env_error,
    unpickle,
)


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


def inspect(path: str, policy_id: str | None) -> Checkpoint:
    """An old-API-stack checkpoint (an algorithm's or a policy's): check its format, pick the policy."""
    from packaging import version
    from ray.rllib.utils.checkpoints import get_checkpoint_info

    names = os.listdir(path)
    if not any(
        name in ("rllib_checkpoint.json", "algorithm_state.pkl", "policy_state.pkl")
        or re.fullmatch(r"checkpoint-\d+", name)
        for name in names
    ):
        raise CLIError(checkpoint_help(path) + ".")
    try:
        info = get_checkpoint_info(path)
    except (ValueError, OSError) as error:
        raise CLIError(f"{checkpoint_help(path)} ({error}).") from error
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
        return _inspect_policy_checkpoint(path, policy_id, info)
    return _inspect_algorithm_checkpoint(path, policy_id, info)


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


def _greedy_state(checkpoint: Checkpoint, seed: int) -> dict[str, Any]:
    """The algorithm's saved state, its config set for greedy whole episodes sampled in this
    process (no remote env runners, GPUs or evaluation workers), seeded with ``seed``."""
    from ray.rllib.algorithms.algorithm import Algorithm

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
    return state


def build_algorithm(checkpoint: Checkpoint, seed: int) -> Any:
    """The algorithm, rebuilt for greedy rollouts on the driver only (no remote env runners).
    Needs a Ray instance; :func:`build_env_runner` builds what the rollouts use without one."""
    from ray.rllib.algorithms.algorithm import Algorithm
    from ray.rllib.utils.error import EnvError

    state = _greedy_state(checkpoint, seed)
    try:
        return Algorithm.from_state(state)
    except EnvError as error:
        raise env_error(checkpoint.config, error) from error


def build_env_runner(checkpoint: Checkpoint, seed: int) -> Any:
    """The algorithm's own env runner (RLlib's ``RolloutWorker``: its env, preprocessors, filters
    and policies with their trained weights), built and restored as the rebuilt algorithm builds
    its local one (``EnvRunnerGroup``, then ``set_state``), but without the algorithm around it
    and without Ray, whose start and stop took ~4 s of the command. Sampling from the
    environment: an offline algorithm's input is not its episodes."""
    from ray.rllib.algorithms.algorithm import Algorithm
    from ray.rllib.evaluation.rollout_worker import RolloutWorker
    from ray.rllib.utils.error import EnvError

    state = _greedy_state(checkpoint, seed)
    config = state["config"]
    config.offline_data(input_="sampler")
    # The local env runner's config, as EnvRunnerGroup makes it: the local TF session arguments.
    session_args = {**config.tf_session_args, **config.local_tf_session_args}
    config = config.copy(copy_frozen=False).framework(tf_session_args=session_args)
    algorithm_class = state["algorithm_class"]
    runner_class = config.env_runner_cls or RolloutWorker
    try:
        _, env_creator = Algorithm._get_env_id_and_creator(config.env, config)
        runner = runner_class(
            env_creator=env_creator,
            validate_env=algorithm_class.validate_env,
            default_policy_class=algorithm_class.get_default_policy_class(config),
            config=config,
            worker_index=0,
            num_workers=0,
        )
    except EnvError as error:
        raise env_error(checkpoint.config, error) from error
    runner.set_state(state["worker"])
    return runner
