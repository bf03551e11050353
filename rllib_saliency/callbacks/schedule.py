"""When the callback computes: exactly every ``every`` iterations, or (``every=None``, the default)
after every iteration while its computations took at most ``max_overhead`` of the training time.

Why a time budget: one computation at the defaults costs about 0.2 s on a CartPole MLP but
about 85 s on an Atari-shaped CNN on a 2-core CPU learner (README, "Callback overhead"),
ten iterations' worth there. A fixed schedule cannot suit both; a budget spaces the
computations out where they are expensive and keeps every iteration where they are cheap.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("rllib_saliency")


class ComputationSchedule:
    """Decides, at each ``on_train_result``, whether a computation is due, and counts its cost.

    Training time is the sum of the results' ``time_this_iter_s`` since the callback's first
    result: RLlib's own measure of ``step()``, which ends before ``on_train_result`` runs, so
    it never includes the callback's computations. The first iteration always computes.
    """

    def __init__(self, every: int | None, max_overhead: float) -> None:
        self.every = every
        self.max_overhead = max_overhead
        self.training_seconds = 0.0
        self.computing_seconds = 0.0
        self.skipped = 0
        self._told = False

    def due(self, result: dict[str, Any]) -> bool:
        iteration = int(result["training_iteration"])
        self.training_seconds += max(0.0, float(result.get("time_this_iter_s") or 0.0))
        if self.every is not None:
            return iteration % self.every == 0
        total = self.training_seconds + self.computing_seconds
        if self.computing_seconds <= self.max_overhead * total:
            return True
        self.skipped += 1
        if not self._told:
            self._told = True
            logger.info(
                "rllib_saliency: spacing the saliency computations so that they take at most "
                "%.0f%% of the training time (so far %.1f s of %.1f s); pass "
                "SaliencyCallbacks.configure(every=1) to compute after every iteration anyway, "
                "or max_overhead= to change the share.",
                100 * self.max_overhead,
                self.computing_seconds,
                total,
            )
        return False

    def computed(self, seconds: float) -> None:
        self.computing_seconds += seconds

    def share(self) -> float:
        """The computations' share of the time so far (training plus computations)."""
        total = self.training_seconds + self.computing_seconds
        return self.computing_seconds / total if total > 0 else 0.0
