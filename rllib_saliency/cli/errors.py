"""The CLI's user-facing messages and the error type that carries them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# CLIError and the checkpoint messages live a floor below, where the stack packages raise them too.
from rllib_saliency.errors import IMPORT_HINT, SUPPORTED, CLIError, UnsupportedModel

__all__ = ["IMPORT_HELP", "IMPORT_HINT", "PROG", "SUPPORTED", "CLIError", "library_call"]

PROG = "rllib-saliency"
IMPORT_HELP = (
    "import MODULE before loading the checkpoint, so that custom environments, models and "
    "callbacks registered or defined there are found (repeatable; the current directory is on "
    "the import path)"
)


def library_call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Our own functions raise ValueError with a user-facing message for bad options, and
    UnsupportedModel (a TypeError) for a model they cannot explain."""
    try:
        return function(*args, **kwargs)
    except (ValueError, UnsupportedModel) as error:
        raise CLIError(str(error)) from error
