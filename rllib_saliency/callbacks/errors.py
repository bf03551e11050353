"""Error handling of the training callback: nothing it does may break training.

Driver side, :class:`ErrorLog` logs the first traceback of each kind and counts
the rest. Env-runner and learner side, :class:`PendingErrors` keeps errors as
data until the driver's next request: an exception raised inside
``foreach_env_runner`` takes the runner down silently, and a runner's own log
is easy to miss.
"""

from __future__ import annotations

import logging
import traceback

from rllib_saliency.errors import ErrorRecord

logger = logging.getLogger("rllib_saliency")


class ErrorLog:
    """Logs the first traceback of each (stage, error type), then counts; never raises."""

    REPEAT_EVERY = 100

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def record(self, stage: str, kind: str, details: str, times: int = 1) -> None:
        key = (stage, kind)
        before = self.counts.get(key, 0)
        self.counts[key] = count = before + times
        if before == 0:
            logger.error("rllib_saliency: %s failed; training goes on without it.\n%s", stage, details)
        elif count // self.REPEAT_EVERY > before // self.REPEAT_EVERY:
            logger.error("rllib_saliency: %s has failed %d times (%s); training goes on.", stage, count, kind)

    def exception(self, stage: str, error: BaseException) -> None:
        self.record(stage, type(error).__name__, "".join(traceback.format_exception(error)))


class PendingErrors:
    """Env-runner/learner side: errors kept as data until the driver's next request, which logs them."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, str], list] = {}

    def add(self, stage: str, kind: str, details: str) -> None:
        entry = self._pending.setdefault((stage, kind), [0, details])
        entry[0] += 1

    def exception(self, stage: str, error: BaseException) -> None:
        self.add(stage, type(error).__name__, "".join(traceback.format_exception(error)))

    def take(self) -> list[ErrorRecord]:
        taken = [(stage, kind, details, count) for (stage, kind), (count, details) in self._pending.items()]
        self._pending.clear()
        return taken
