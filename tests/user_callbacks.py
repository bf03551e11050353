"""A user's own callbacks, for the tests that compose them with SaliencyCallbacks. In a module of
tests/ (on the Ray workers' PYTHONPATH, see conftest.ray_cluster), so that remote env runners
can import the class. ``RLlibCallback`` is ``DefaultCallbacks``: one class serves both stacks."""

from __future__ import annotations

from ray.rllib.callbacks.callbacks import RLlibCallback


class MarkingCallbacks(RLlibCallback):
    """Marks results and counts sampled batches on every runner."""

    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_sample_end(self, *, samples, **kwargs):
        self.batches += 1

    def on_train_result(self, *, result, **kwargs):
        result["user_callback_ran"] = True


def user_batches(runner) -> int:
    """The batches the user's callbacks counted on ``runner`` (either stack's env runner, the
    callbacks composed by a list or by ``make_multi_callbacks``); -1 if they are not there."""
    for name in ("_callbacks", "callbacks"):
        holders = getattr(runner, name, None)
        for holder in holders if isinstance(holders, list) else [holders]:
            for callbacks in [holder, *getattr(holder, "_callback_list", [])]:
                if isinstance(callbacks, MarkingCallbacks):
                    return callbacks.batches
    return -1
