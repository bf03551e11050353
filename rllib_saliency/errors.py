"""Errors that several floors raise: a model, or one of its targets, is not supported; a
checkpoint, an environment or an option the user can fix (:class:`CLIError`).

The refusals subclass the built-in types the API documents (``TypeError`` for a model,
``ValueError`` for a target), so ``except TypeError`` keeps working; the training
callback reports them as one line, once per model, and the CLI prints them as its error
message. Imports nothing of the package, so any module may raise them.
"""

from __future__ import annotations

# (stage, error type, details, times): how workers report failures to the driver, as data.
ErrorRecord = tuple[str, str, str, int]


class UnsupportedModel(TypeError):
    """This model cannot be explained at all (its message says what it is, what it lacks)."""


class UnsupportedTarget(ValueError):
    """This target cannot be explained on this model; its message names the targets it supports."""


class CLIError(Exception):
    """An error the user can fix: printed as one message, exit code 1, no traceback.

    Raised by the CLI and by the stack packages that read checkpoints and roll episodes out for
    it (and for the training callback's movies); ``rllib_saliency.cli.errors`` re-exports it."""


# The messages those errors end with: what rllib-saliency reads, and how to make custom code found.
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
