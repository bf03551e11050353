"""Saliency movies of single episodes: per-step data, GIF frames and a self-contained HTML explorer.

``rllib-saliency movie`` (``rllib_saliency.cli.movie``) plays greedy episodes
(:mod:`.rollout`), computes both heads' maps at every step (:mod:`.data`), and
writes ``episode_{k}.gif`` (:mod:`.frames`), ``episode_{k}.html`` (:mod:`.page`)
and ``episode_{k}.npz``.
"""

from rllib_saliency.movie.data import MovieData, compute_movie_data
from rllib_saliency.movie.frames import render_frames, write_gif
from rllib_saliency.movie.page import write_page
from rllib_saliency.movie.rollout import EpisodeRecord

__all__ = ["EpisodeRecord", "MovieData", "compute_movie_data", "render_frames", "write_gif", "write_page"]
