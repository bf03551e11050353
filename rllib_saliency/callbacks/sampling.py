"""Env-runner side of the training callback: one uniform reservoir of sampled rows per model."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from typing import Any

from rllib_saliency.callbacks.errors import PendingErrors
from rllib_saliency.callbacks.settings import SaliencySettings
from rllib_saliency.sample_summaries import Sample
from rllib_saliency.sampler import ReservoirSampler

logger = logging.getLogger("rllib_saliency")


class SampleStore:
    """Which models this runner explains, and a reservoir of ``num_samples`` rows for each."""

    def __init__(self, settings: SaliencySettings) -> None:
        self.settings = settings
        self.errors = PendingErrors()
        self._samplers: dict[str, ReservoirSampler] = {}
        self._choice: dict[str, bool] = {}
        self._checked: set[str] = set()
        # Stack-specific: a space naming each model's features, if not its own.
        self.layout_spaces: dict[str, Any] = {}

    def wants(self, model_id: str, model: Any, check: Callable[[Any], bool]) -> bool:
        """Whether to sample ``model_id``: configured, and ``check(model)`` passes. Decided once per
        model. ``check`` returns False for a kind of model the stack does not explain (e.g. a
        random policy beside TF ones: one warning) and raises TypeError for a supported kind whose
        model the engine cannot handle (reported once to the driver as an error)."""
        if model_id not in self._choice:
            wanted = self.settings.policies is None or model_id in self.settings.policies
            if wanted:
                try:
                    if not check(model):
                        logger.warning(
                            "rllib_saliency: policy %r (%s) is not a kind rllib-saliency explains on this "
                            "RLlib stack; skipped.",
                            model_id,
                            type(model).__name__,
                        )
                        wanted = False
                except TypeError as error:
                    self.errors.exception(f"policy {model_id}", error)
                    wanted = False
            self._choice[model_id] = wanted
        return self._choice[model_id]

    def checked(self, model_id: str) -> bool:
        """Whether the stack already checked that this model's rows are what it saw."""
        return model_id in self._checked

    def mark_checked(self, model_id: str) -> None:
        self._checked.add(model_id)

    def refuse(self, model_id: str, error: TypeError) -> None:
        """Stop sampling a model found unsupported while sampling; reported once to the driver."""
        self.errors.exception(f"policy {model_id}", error)
        self._choice[model_id] = False
        self._samplers.pop(model_id, None)

    def add(self, model_id: str, worker_index: int, obs: Any, actions: Any, extras: tuple = ()) -> None:
        if model_id not in self._samplers:
            # Reproducible per (seed, model, env runner), different across runners.
            seed = [self.settings.seed, zlib.crc32(model_id.encode()), worker_index]
            self._samplers[model_id] = ReservoirSampler(self.settings.num_samples, seed)
        self._samplers[model_id].add(obs, actions, extras)

    def drain(self) -> tuple[dict[str, Sample], dict[str, int]]:
        """The rows sampled since the last drain per model, and the non-finite rows skipped so far."""
        samples: dict[str, Sample] = {}
        skipped: dict[str, int] = {}
        for model_id, sampler in self._samplers.items():
            skipped[model_id] = sampler.skipped_nonfinite
            drained = sampler.drain()
            if drained is not None:
                samples[model_id] = Sample(*drained)
        return samples, skipped
