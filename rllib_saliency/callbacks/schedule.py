"""When the callback computes, and how much: exactly every ``every`` iterations (everything,
whatever it costs), or (``every=None``, the default) within ``max_overhead`` of the training time.

Why a time budget: one computation at the defaults costs about 0.2 s on a CartPole MLP but
about 85 s on an Atari-shaped CNN on a 2-core CPU learner (README, "Callback overhead"),
ten iterations' worth there. A fixed schedule cannot suit both; a budget spaces the
computations out where they are expensive and keeps every iteration where they are cheap.

Why two sizes of computation: on such a CNN the first configured method (the gradient) costs
about 1 s and the further parts (Integrated Gradients, the deletion test) the rest. The first
computation therefore runs the further parts only while they fit ``FIRST_ALLOWANCE_S`` (a short
run no longer pays a minute for it); while a complete computation costs more than one
iteration's share of the budget, complete computations come when the budget has room for
their cost, and in between *light* ones (the first method of every target) on at most half of
the budget, so the maps still evolve in TensorBoard between complete computations.
"""

from __future__ import annotations

import logging
from typing import Any

from rllib_saliency.sample_summaries import FULL, ComputationPlan

logger = logging.getLogger("rllib_saliency")

# Seconds the first computation may spend on its further parts (more if the budget allows).
FIRST_ALLOWANCE_S = 2.0
LIGHT = ComputationPlan(light=True)


class ComputationSchedule:
    """Decides, at each ``on_train_result``, whether a computation is due and how much of the
    work it does, and counts its cost.

    Training time is the sum of the results' ``time_this_iter_s`` since the callback's first
    result: RLlib's own measure of ``step()``, which ends before ``on_train_result`` runs, so
    it never includes the callback's computations. The first iteration always computes.
    ``further_parts``: whether the settings ask for more than one method's maps (other
    methods, or trust metrics that run the model again); without them every computation is
    complete.
    """

    def __init__(self, every: int | None, max_overhead: float, further_parts: bool = True) -> None:
        self.every = every
        self.max_overhead = max_overhead
        self.further_parts = further_parts
        self.training_seconds = 0.0
        self.computing_seconds = 0.0
        self.light_seconds = 0.0
        self.iterations = 0
        self.computations = 0
        # Seconds a complete computation costs: measured, or (after a first computation that
        # deferred parts) its time plus the deferred parts' estimates, an upper bound.
        self.complete_cost: float | None = None
        self.skipped = 0
        self._told_spacing = False
        self._told_deferring = False

    def plan(self, result: dict[str, Any]) -> ComputationPlan | None:
        """The plan of the computation due after this result, or None."""
        iteration = int(result["training_iteration"])
        self.iterations += 1
        self.training_seconds += max(0.0, float(result.get("time_this_iter_s") or 0.0))
        if self.every is not None:
            return FULL if iteration % self.every == 0 else None
        budget = self.max_overhead
        total = self.training_seconds + self.computing_seconds
        if self.computations == 0:
            return ComputationPlan(allowance=max(FIRST_ALLOWANCE_S, budget * total))
        cost = self.complete_cost or 0.0
        per_iteration = budget * self.training_seconds / self.iterations
        if not self.further_parts or cost <= per_iteration:
            if self.computing_seconds <= budget * total:
                return FULL
        elif self.computing_seconds + cost <= budget * (total + cost):
            return FULL
        elif self.computing_seconds <= budget * total and self.light_seconds <= budget / 2 * total:
            return LIGHT
        self._skip(total)
        return None

    def _skip(self, total: float) -> None:
        self.skipped += 1
        if not self._told_spacing:
            self._told_spacing = True
            logger.info(
                "rllib_saliency: spacing the saliency computations so that they take at most "
                "%.0f%% of the training time (so far %.1f s of %.1f s); pass "
                "SaliencyCallbacks.configure(every=1) to compute after every iteration anyway, "
                "or max_overhead= to change the share.",
                100 * self.max_overhead,
                self.computing_seconds,
                total,
            )

    def computed(self, seconds: float, plan: ComputationPlan, deferred: dict[str, float]) -> None:
        """Count a computation of ``seconds`` that ran ``plan`` and left ``deferred`` out (each
        part's estimated seconds)."""
        self.computations += 1
        self.computing_seconds += seconds
        if plan.light:
            self.light_seconds += seconds
        elif not deferred:
            self.complete_cost = seconds
        else:  # a first computation that left parts out: its cost, were they in
            self.complete_cost = seconds + sum(deferred.values())
            if not self._told_deferring:
                self._told_deferring = True
                logger.info(
                    "rllib_saliency: the first saliency computation left out %d part(s) (%s) that "
                    "would take an estimated %.0f s more; they come in a complete computation when "
                    "the time budget (max_overhead=%g) has room. Pass "
                    "SaliencyCallbacks.configure(every=1) to compute everything every iteration.",
                    len(deferred),
                    ", ".join(sorted(deferred)[:6]) + (", ..." if len(deferred) > 6 else ""),
                    sum(deferred.values()),
                    self.max_overhead,
                )

    def share(self) -> float:
        """The computations' share of the time so far (training plus computations)."""
        total = self.training_seconds + self.computing_seconds
        return self.computing_seconds / total if total > 0 else 0.0
