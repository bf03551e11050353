"""The callback's images are rendered off the training thread.

Drawing and PNG-encoding the charts of one computation (two per method and target)
took most of an image computation's driver time, and it blocked the training loop
(issue: the 1-in-``image_every`` iterations dominated the mean overhead). One
background thread now renders and writes them while training goes on; scalars and
histograms are still written on the training thread, at once.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from rllib_saliency.callbacks.errors import ErrorLog


class BackgroundImages:
    """At most one computation's images pending on one thread.

    Submitting the next computation's images first waits for the previous ones, so
    memory stays bounded and a renderer slower than training delays training by no
    more than its excess. :meth:`wait` is called before training stops or is saved,
    so the event files are complete then. A failure is logged once per kind by the
    callback's :class:`ErrorLog` and never reaches training.
    """

    def __init__(self, errors: ErrorLog) -> None:
        self._errors = errors
        self._executor: ThreadPoolExecutor | None = None
        self._pending: Future | None = None

    def submit(self, render_and_write: Callable[[], None], stage: str = "rendering images") -> None:
        """Run ``render_and_write`` on the image thread; a failure is logged under ``stage``."""
        self.wait()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rllib-saliency-images")
        self._pending = self._executor.submit(self._run, render_and_write, stage)

    def _run(self, render_and_write: Callable[[], None], stage: str) -> None:
        try:
            render_and_write()
        except Exception as error:  # noqa: BLE001 - a logging failure never breaks training
            self._errors.exception(stage, error)

    def wait(self) -> None:
        """Block until the pending images (if any) are written."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()
