"""Offline algorithms' rollouts (see :mod:`rllib_saliency.stacks.new.offline`): an offline
algorithm never sampled, so no env-runner connectors exist (BC and MARWIL save none); they are
built from the algorithm's config. Imports no other stack module (the CLI uses it).
"""

from __future__ import annotations

from typing import Any


def is_offline_config(config: dict[str, Any]) -> bool:
    """A saved config (``AlgorithmConfig.get_state()``) of offline training: ``input_`` names data
    files (as ``AlgorithmConfig.is_offline``). BC and MARWIL then build no env runners and save no
    env-runner connectors; CQL (online in RLlib's sense) keeps an idle local env runner."""
    source = config.get("input_")
    listed = isinstance(source, list) and bool(source) and isinstance(source[0], str)
    paths = isinstance(source, str) or listed
    return paths and source != "sampler"


def connectors_from_config(
    config: Any, observation_space: Any, action_space: Any, device: Any = None
) -> tuple[Any, Any]:
    """Env-to-module and module-to-env pipelines for one env with these spaces, built from an
    algorithm's config (an ``AlgorithmConfig`` or its saved state) as RLlib's env runners build
    theirs (its custom connectors included, called with ``env=None`` and the spaces), fresh:
    no connector state (e.g. filter statistics) exists for an algorithm that never sampled."""
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
    from ray.rllib.env import INPUT_ENV_SINGLE_SPACES, INPUT_ENV_SPACES

    if isinstance(config, dict):
        config = AlgorithmConfig.from_state(dict(config))
    spaces = {
        INPUT_ENV_SPACES: (observation_space, action_space),
        INPUT_ENV_SINGLE_SPACES: (observation_space, action_space),
    }
    return (
        config.build_env_to_module_connector(env=None, spaces=spaces, device=device),
        config.build_module_to_env_connector(env=None, spaces=spaces),
    )
