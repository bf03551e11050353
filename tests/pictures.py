"""Reading the movie's pictures: a GIF's frames, and where the actor's (blue) and critic's (red)
colours are."""

from __future__ import annotations

import numpy as np
from PIL import Image


def gif_frames(path) -> list[np.ndarray]:
    image = Image.open(path)
    frames = []
    for k in range(image.n_frames):
        image.seek(k)
        frames.append(np.asarray(image.convert("RGB")))
    return frames


def blue(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 2].astype(int) - rgb[..., 0] > 60) & (rgb[..., 2].astype(int) - rgb[..., 1] > 60)


def red(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0].astype(int) - rgb[..., 2] > 60) & (rgb[..., 0].astype(int) - rgb[..., 1] > 60)
