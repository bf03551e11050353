"""One TensorBoard event-file writer per run, with TensorBoard's own machinery (no TF graph)."""

from __future__ import annotations

import os
import time

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
from tensorboard.plugins.text import metadata as text_metadata
from tensorboard.summary.writer.event_file_writer import EventFileWriter

HISTOGRAM_BINS = 30


class SaliencyWriter:
    """Writes scalars, histograms, PNG images and text into ``logdir``.

    TensorBoard reads every event file in a directory as one run, so writing
    into the algorithm's (or Tune trial's) log dir puts saliency next to
    RLlib's own curves.
    """

    def __init__(self, logdir: str) -> None:
        os.makedirs(logdir, exist_ok=True)
        self.logdir = logdir
        self._writer = EventFileWriter(logdir, flush_secs=10, filename_suffix=".saliency")

    def _add(self, step: int, *values: summary_pb2.Summary.Value) -> None:
        summary = summary_pb2.Summary(value=list(values))
        self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

    def scalars(self, values: dict[str, float], step: int) -> None:
        self._add(step, *(summary_pb2.Summary.Value(tag=t, simple_value=float(v)) for t, v in values.items()))

    def histogram(self, tag: str, values: np.ndarray, weights: np.ndarray, step: int) -> None:
        """A histogram of ``values``, each counted ``weights`` times (a weighted sample)."""
        values = np.asarray(values, np.float64)
        weights = np.asarray(weights, np.float64)
        low, high = float(values.min()), float(values.max())
        if low == high:
            low, high = low - 0.5, high + 0.5
        counts, edges = np.histogram(values, bins=HISTOGRAM_BINS, range=(low, high), weights=weights)
        histogram = summary_pb2.HistogramProto(
            min=float(values.min()),
            max=float(values.max()),
            num=float(weights.sum()),
            sum=float((values * weights).sum()),
            sum_squares=float((values * values * weights).sum()),
            bucket_limit=edges[1:].tolist(),
            bucket=counts.tolist(),
        )
        self._add(step, summary_pb2.Summary.Value(tag=tag, histo=histogram))

    def image(self, tag: str, png: bytes, height: int, width: int, step: int) -> None:
        image = summary_pb2.Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=png)
        self._add(step, summary_pb2.Summary.Value(tag=tag, image=image))

    def text(self, tag: str, text: str, step: int) -> None:
        tensor = tensor_pb2.TensorProto(
            dtype=types_pb2.DT_STRING,
            string_val=[text.encode("utf-8")],
            tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[]),
        )
        metadata = text_metadata.create_summary_metadata(display_name=tag, description="")
        self._add(step, summary_pb2.Summary.Value(tag=tag, metadata=metadata, tensor=tensor))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
