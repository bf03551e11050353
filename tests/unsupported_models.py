"""A model the engine cannot explain, per stack, for the contract that the callback reports it once
and training goes on (tests/contracts/test_robustness.py). Each stack's model lives in a function
that imports only its own framework: a torch process must not import TensorFlow (and the reverse
costs seconds). The classes live at module level in their own files so Ray's workers can unpickle
them by name."""

from __future__ import annotations

from typing import Any


def old_stack(config: Any) -> tuple[Any, str]:
    """A TF ModelV2 that reads the last 3 observations through a trajectory view ("prev_n_obs"),
    as in RLlib's frame-stacking examples: an input explain() does not feed. Returns the config
    using it and a fragment of the error the callback must report."""
    from ray.rllib.models import ModelCatalog
    from unsupported_models_tf import FrameStackingModel

    ModelCatalog.register_custom_model("frame_stacking", FrameStackingModel)
    config = config.training(model={"custom_model": "frame_stacking"})
    return config, "reads ['prev_n_obs'] from the sample batch"


def new_stack(config: Any) -> tuple[Any, str]:
    """A user's own TorchRLModule that reads a Dict observation itself (no FlattenObservations
    connector): explain() has no flat observation to differentiate."""
    from envs import DictObservationEnv
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from unsupported_models_torch import DictInputModule

    config = config.environment(DictObservationEnv).rl_module(
        rl_module_spec=RLModuleSpec(module_class=DictInputModule)
    )
    return config, "FlattenObservations"
