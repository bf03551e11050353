"""Refusals that every floor may raise or report: a model, or one of its targets, is not supported.

They subclass the built-in types the API documents (``TypeError`` for a model,
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
