"""Read TensorBoard event files back with TensorBoard's own loader."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def load(logdir: str, algo: Any = None) -> EventAccumulator:
    """The events in ``logdir``; with ``algo``, after its SaliencyCallbacks' images that are
    still rendering in the background (off the training thread) are written."""
    if algo is not None:
        from rllib_saliency.callbacks import find_saliency_callbacks

        callbacks = find_saliency_callbacks(algo)
        if callbacks is not None and callbacks._reporter is not None:
            callbacks._reporter.wait_for_images()
    accumulator = EventAccumulator(
        logdir, size_guidance={"scalars": 0, "images": 0, "histograms": 0, "tensors": 0}
    )
    accumulator.Reload()
    return accumulator


def scalars(accumulator: EventAccumulator, tag: str) -> dict[int, float]:
    return {event.step: event.value for event in accumulator.Scalars(tag)}


def decode_png(image_event) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(image_event.encoded_image_string)).convert("RGB"))


def text(accumulator: EventAccumulator, tag: str) -> str:
    """The last text summary under ``tag`` (TensorBoard's TEXT dashboard), as a string."""
    from tensorboard.util import tensor_util

    value = tensor_util.make_ndarray(accumulator.Tensors(tag)[-1].tensor_proto)
    return b"\n".join(np.asarray(value).reshape(-1)).decode()
