"""The CLI's user-facing messages and the error type that carries them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rllib_saliency.errors import UnsupportedModel

PROG = "rllib-saliency"
SUPPORTED = (
    "rllib-saliency supports new-API-stack checkpoints of torch RLModules (algo.save_to_path(...) or "
    "algo.save() with the default config.api_stack(), or rl_module.save_to_path(...)) and "
    "old-API-stack TensorFlow checkpoints: algorithms or policies built with "
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


class CLIError(Exception):
    """An error the user can fix: printed as one message, exit code 1, no traceback."""


def library_call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Our own functions raise ValueError with a user-facing message for bad options, and
    UnsupportedModel (a TypeError) for a model they cannot explain."""
    try:
        return function(*args, **kwargs)
    except (ValueError, UnsupportedModel) as error:
        raise CLIError(str(error)) from error
