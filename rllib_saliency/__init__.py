"""rllib-saliency: what is my RLlib agent looking at?

Importing this package sets ``TF_USE_LEGACY_KERAS=1`` (RLlib's TF models need
Keras 2 from ``tf-keras``) before TensorFlow resolves ``tf.keras``; Ray workers
started afterwards inherit it.
"""

from rllib_saliency._tf_setup import ensure_legacy_keras

ensure_legacy_keras()

from rllib_saliency.activation import ActivationMaximization, maximize_activation  # noqa: E402
from rllib_saliency.callbacks import SaliencyCallbacks, SaliencySettings  # noqa: E402
from rllib_saliency.engine import Attribution, explain  # noqa: E402
from rllib_saliency.methods import METHODS  # noqa: E402
from rllib_saliency.recurrent import per_step_states  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "ActivationMaximization",
    "Attribution",
    "SaliencyCallbacks",
    "SaliencySettings",
    "explain",
    "maximize_activation",
    "per_step_states",
]
