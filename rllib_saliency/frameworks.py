"""Framework set-up that must happen before TensorFlow or torch is first imported.

``import rllib_saliency`` imports neither framework (nor ``ray.rllib``, which
imports both when they are installed). It only prepares the process, and the
Ray workers started after it, for whichever stack the user is on:

* **TensorFlow (old API stack).** TensorFlow >= 2.16 maps ``tf.keras`` to
  Keras 3, which breaks RLlib's TF models. ``TF_USE_LEGACY_KERAS=1`` switches
  it back to ``tf-keras``, but only if set before ``tf.keras`` is first
  resolved; Ray workers inherit the driver's environment when the cluster
  starts, so setting it at import time covers env runners too.
* **TensorFlow and torch in one environment (new API stack).** With the
  default torch wheel (it ships triton), triton crashes the process with a
  segmentation fault when it loads after TensorFlow; ``import ray.rllib``
  imports TensorFlow whenever it is installed, and torch loads triton later
  (e.g. in the learner's optimizer set-up). Loading triton first avoids it.
  A finder on ``sys.meta_path`` imports triton just before TensorFlow, only
  when both are installed and only when TensorFlow is actually imported.
  Ray worker processes get the same finder through a worker set-up hook
  (``RAY_RUNTIME_ENV_HOOK``, applied by the ``ray.init()`` that follows).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import os
import sys
import types
import warnings
from typing import Any

logger = logging.getLogger("rllib_saliency")

KERAS_ENV_VAR = "TF_USE_LEGACY_KERAS"
RAY_HOOK_ENV_VAR = "RAY_RUNTIME_ENV_HOOK"
# A user's own runtime-env hook, which ours calls first.
PREVIOUS_RAY_HOOK_ENV_VAR = "RLLIB_SALIENCY_PREVIOUS_RUNTIME_ENV_HOOK"
OUR_RAY_HOOK = "rllib_saliency.frameworks.runtime_env_hook"
WORKER_SETUP_HOOK = "rllib_saliency.frameworks.prepare_worker"

FIX_MESSAGE = (
    "RLlib's TensorFlow models need Keras 2 (the 'tf-keras' package), but "
    "TensorFlow has already loaded Keras 3 as tf.keras in this process. "
    "Fix: import rllib_saliency (or set the environment variable "
    "TF_USE_LEGACY_KERAS=1) before anything imports tensorflow, e.g. put "
    "'import rllib_saliency' at the very top of your script, or run "
    "'export TF_USE_LEGACY_KERAS=1' in the shell that starts Python and Ray."
)
MISSING_TF_KERAS = (
    "RLlib's TensorFlow models need the 'tf-keras' package. Fix: pip install "
    "'rllib-saliency[tf]' (or pip install 'tf-keras==2.21.*', matching your tensorflow version)."
)


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def set_legacy_keras() -> None:
    """Set ``TF_USE_LEGACY_KERAS=1`` where it matters (tf-keras installed); never imports TensorFlow."""
    if not _installed("tf_keras"):
        return  # torch-only install, or TensorFlow without tf-keras: checked when a TF policy is seen
    previous = os.environ.get(KERAS_ENV_VAR)
    if previous not in (None, "1", "true", "True"):
        warnings.warn(
            f"{KERAS_ENV_VAR}={previous!r} was set; rllib_saliency sets it to '1' "
            "because RLlib's TensorFlow models do not work with Keras 3.",
            stacklevel=3,
        )
    os.environ[KERAS_ENV_VAR] = "1"
    tf = sys.modules.get("tensorflow")
    if tf is not None and "keras" in sys.modules and not tf.keras.__name__.startswith("tf_keras"):
        warnings.warn(FIX_MESSAGE + " (TensorFlow policies will fail; torch RLModules are unaffected.)",
                      stacklevel=3)


def ensure_legacy_keras() -> None:
    """Called when a TensorFlow policy is first seen: ImportError saying how to fix a Keras 3 set-up."""
    if not _installed("tf_keras"):
        raise ImportError(MISSING_TF_KERAS)
    import tensorflow as tf

    if not tf.keras.__name__.startswith("tf_keras"):
        raise ImportError(FIX_MESSAGE)


class _TritonBeforeTensorFlow(importlib.abc.MetaPathFinder):
    """Imports triton just before TensorFlow's first import, then steps aside."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname != "tensorflow":
            return None
        _remove_finder()
        if "triton" not in sys.modules:
            try:
                import triton  # noqa: F401
            except Exception as error:  # noqa: BLE001 - a broken triton must not stop TensorFlow
                logger.debug("rllib_saliency: could not import triton before TensorFlow: %s", error)
        return None  # the normal finders import TensorFlow


_FINDER = _TritonBeforeTensorFlow()


def _remove_finder() -> None:
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)


def order_triton_before_tensorflow() -> bool:
    """Install the finder when TensorFlow is not imported yet and triton is installed."""
    if "tensorflow" in sys.modules or "triton" in sys.modules:
        if "tensorflow" in sys.modules and "triton" not in sys.modules and _installed("triton"):
            logger.warning(
                "rllib_saliency: TensorFlow was imported before rllib_saliency, and torch's triton is "
                "installed: RLlib's new API stack (torch) may crash with a segmentation fault when "
                "triton loads. Import rllib_saliency first (see README, Known issues)."
            )
        return False
    if not (_installed("triton") and _installed("tensorflow")):
        return False
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    return True


def runtime_env_hook(runtime_env: dict | None) -> dict:
    """Ray's ``RAY_RUNTIME_ENV_HOOK``: every Ray worker runs :func:`prepare_worker` at start-up."""
    previous = os.environ.get(PREVIOUS_RAY_HOOK_ENV_VAR)
    if previous:
        from ray._private.utils import load_class

        runtime_env = load_class(previous)(runtime_env)
    runtime_env = dict(runtime_env or {})
    runtime_env.setdefault("worker_process_setup_hook", WORKER_SETUP_HOOK)
    return runtime_env


def prepare_worker() -> None:
    """Ray worker start-up: the same import order as the driver's, before RLlib is imported."""
    order_triton_before_tensorflow()


def install_ray_hook() -> None:
    """Make the next ``ray.init()`` in this process set up its workers like this process."""
    current = os.environ.get(RAY_HOOK_ENV_VAR)
    if current == OUR_RAY_HOOK:
        return
    if current:
        os.environ[PREVIOUS_RAY_HOOK_ENV_VAR] = current
    os.environ[RAY_HOOK_ENV_VAR] = OUR_RAY_HOOK


def prepare_process() -> None:
    """Everything ``import rllib_saliency`` does: cheap, imports no framework."""
    set_legacy_keras()
    # (Asked before the finder is installed: find_spec("tensorflow") would trigger it.)
    both_installed = _installed("triton") and _installed("tensorflow")
    order_triton_before_tensorflow()
    # Ray workers start as fresh processes: they get the safe order even when this process
    # imported TensorFlow too early for it.
    if both_installed:
        install_ray_hook()


# RLlib's own switches (ray/rllib/utils/framework.py: try_import_tf, try_import_torch) for importing
# it without TensorFlow or without torch, as on an install that lacks one of them.
NO_TF_ENV_VAR = "RLLIB_TEST_NO_TF_IMPORT"
NO_TORCH_ENV_VAR = "RLLIB_TEST_NO_TORCH_IMPORT"


def skip_tensorflow() -> bool:
    """Make RLlib's import skip TensorFlow, unless it is imported already: for a process that only
    runs torch RLModules (``rllib-saliency`` on a new-API-stack checkpoint), where importing
    TensorFlow was most of the command's start-up. Returns whether TensorFlow will be skipped."""
    if "tensorflow" in sys.modules:
        return False
    os.environ.setdefault(NO_TF_ENV_VAR, "1")
    # RLlib warns "Not importing TensorFlow for test purposes" on every such import.
    logging.getLogger("ray.rllib.utils.framework").setLevel(logging.ERROR)
    # TensorBoard's event writer imports TensorFlow for its file I/O when it can, unless the
    # module tensorboard.compat.notf exists (its own switch, a build target that pip's package
    # lacks): then it uses its TensorFlow stub, which writes local event files the same way.
    if "tensorboard.compat.tf" not in sys.modules:
        sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    return True


def skip_torch() -> bool:
    """Make RLlib's import skip torch, unless torch or RLlib is imported already: for a process that
    only runs TF policies (``rllib-saliency`` on an old-API-stack checkpoint), where importing torch
    was ~2.4 s of CPU in the command's start-up (a Ray worker started later inherits the switch).
    Returns whether torch will be skipped."""
    if "torch" in sys.modules or "ray.rllib" in sys.modules:
        return False
    os.environ.setdefault(NO_TORCH_ENV_VAR, "1")
    # RLlib warns "Not importing PyTorch for test purposes" on every such import.
    logging.getLogger("ray.rllib.utils.framework").setLevel(logging.ERROR)
    return True
