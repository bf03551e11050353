"""Observations given with ``--obs FILE``: loading and shape checks."""

from __future__ import annotations

import os

import numpy as np

from rllib_saliency.cli.errors import CLIError


def load_obs_file(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise CLIError(f"--obs {path!r}: no such file.")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise CLIError(f"--obs {path!r}: not a numpy .npy/.npz file ({error}).") from error
    if isinstance(data, np.lib.npyio.NpzFile):
        if "observations" not in data.files:
            raise CLIError(f"--obs {path!r}: an .npz needs an 'observations' array; it has {data.files}.")
        data = data["observations"]
    return np.asarray(data)


def check_obs_shape(obs: np.ndarray, shape: tuple[int, ...], policy_id: str, source: str) -> np.ndarray:
    if obs.dtype.kind not in "biuf" or obs.shape[1:] != shape or obs.ndim != len(shape) + 1 or not len(obs):
        raise CLIError(
            f"{source}: observations have shape {obs.shape} (dtype {obs.dtype}), but policy {policy_id!r} "
            f"takes a batch (N, {', '.join(map(str, shape))}) of preprocessed observations as in its "
            "sample batches."
        )
    return obs.astype(np.float32)
