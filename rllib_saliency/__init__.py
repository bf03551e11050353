"""rllib-saliency: what is my RLlib agent looking at?

Importing this package imports neither TensorFlow nor torch (nor ``ray.rllib``,
which imports both when installed): the public names below load on first use.
It only prepares the process for both RLlib stacks (see
:mod:`rllib_saliency.frameworks`): ``TF_USE_LEGACY_KERAS=1`` for RLlib's TF
models, and a safe import order when TensorFlow and torch share an environment.
Import it first, before ``ray`` or any framework.
"""

from __future__ import annotations

import importlib
from typing import Any

from rllib_saliency.frameworks import prepare_process

prepare_process()

__version__ = "0.2.0"

# Public name -> module that defines it, imported when the name is first used.
_EXPORTS = {
    "METHODS": "rllib_saliency.methods",
    "ActivationMaximization": "rllib_saliency.activation",
    "maximize_activation": "rllib_saliency.api",
    "learner_module": "rllib_saliency.api",
    "Attribution": "rllib_saliency.engine",
    "explain": "rllib_saliency.api",
    "plot": "rllib_saliency.api",
    "SaliencyCallbacks": "rllib_saliency.callbacks",
    "SaliencySettings": "rllib_saliency.callbacks",
    "per_step_states": "rllib_saliency.stacks.old",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rllib_saliency' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
