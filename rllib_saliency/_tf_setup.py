"""Make TensorFlow load the Keras 2 API (``tf-keras``) that RLlib's TF models need.

TensorFlow >= 2.16 maps ``tf.keras`` to Keras 3, which breaks RLlib's TF models.
``TF_USE_LEGACY_KERAS=1`` switches it back to ``tf-keras``, but only if it is set
before ``tf.keras`` is first resolved. Ray workers inherit the driver's
environment when the cluster starts, so setting it here, at import time, also
covers env runners started later by ``ray.init()``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings

ENV_VAR = "TF_USE_LEGACY_KERAS"

FIX_MESSAGE = (
    "RLlib's TensorFlow models need Keras 2 (the 'tf-keras' package), but "
    "TensorFlow has already loaded Keras 3 as tf.keras in this process. "
    "Fix: import rllib_saliency (or set the environment variable "
    "TF_USE_LEGACY_KERAS=1) before anything imports tensorflow, e.g. put "
    "'import rllib_saliency' at the very top of your script, or run "
    "'export TF_USE_LEGACY_KERAS=1' in the shell that starts Python and Ray."
)


def ensure_legacy_keras() -> None:
    """Set ``TF_USE_LEGACY_KERAS=1``; raise ImportError if it is too late or tf-keras is missing."""
    if importlib.util.find_spec("tf_keras") is None:
        raise ImportError(
            "rllib_saliency needs the 'tf-keras' package for RLlib's TensorFlow "
            "models. Fix: pip install 'tf-keras==2.21.*' (matching your "
            "tensorflow version)."
        )
    previous = os.environ.get(ENV_VAR)
    if previous not in (None, "1", "true", "True"):
        warnings.warn(
            f"{ENV_VAR}={previous!r} was set; rllib_saliency sets it to '1' "
            "because RLlib's TensorFlow models do not work with Keras 3.",
            stacklevel=3,
        )
    os.environ[ENV_VAR] = "1"
    if "tensorflow" in sys.modules:
        # tf.keras is resolved lazily: if nothing touched it yet, the variable
        # set above still takes effect; otherwise Keras 3 is already bound.
        keras_module = sys.modules["tensorflow"].keras
        if not keras_module.__name__.startswith("tf_keras"):
            raise ImportError(FIX_MESSAGE)
