"""Reservoir sampling: bounded, uniform, skips non-finite rows."""

from __future__ import annotations

import numpy as np

from rllib_saliency.sampler import ReservoirSampler


def test_memory_is_bounded_whatever_the_batch_sizes():
    sampler = ReservoirSampler(capacity=10)
    for size in (3, 1000, 1, 57):
        sampler.add(np.arange(size, dtype=np.float32)[:, None], np.zeros(size))
        assert len(sampler) <= 10 and sampler._obs.shape[0] == 10
    obs, actions, _ = sampler.drain()
    assert obs.shape == (10, 1) and actions.shape == (10,)
    assert sampler.drain() is None


def test_sample_is_uniform_across_batches():
    # Rows 0..199 in batches of uneven size; each should be kept with probability 10/200.
    counts = np.zeros(200)
    for seed in range(2000):
        sampler = ReservoirSampler(capacity=10, seed=seed)
        start = 0
        for size in (5, 120, 1, 74):
            sampler.add(np.arange(start, start + size, dtype=np.float32)[:, None], np.zeros(size))
            start += size
        obs, _, _ = sampler.drain()
        assert len(np.unique(obs)) == 10  # no row twice
        counts[obs[:, 0].astype(int)] += 1
    expected = 2000 * 10 / 200  # 100 per row; binomial sd ≈ 9.7
    assert np.abs(counts - expected).max() < 5 * 9.7
    # Early and late rows are equally likely (a biased reservoir favours one end).
    assert abs(counts[:100].mean() - counts[100:].mean()) < 3


def test_actions_stay_with_their_observations_and_nonfinite_rows_are_skipped():
    sampler = ReservoirSampler(capacity=50)
    obs = np.arange(100, dtype=np.float32).reshape(50, 2)
    obs[[3, 9], 1] = np.nan
    obs[4, 0] = np.inf
    sampler.add(obs, np.arange(50) * 10, extras=(np.arange(50) * 100,))
    sample_obs, sample_actions, (sample_extra,) = sampler.drain()
    assert sampler.skipped_nonfinite == 3 and len(sample_obs) == 47
    np.testing.assert_array_equal(sample_actions, sample_obs[:, 0] / 2 * 10)
    np.testing.assert_array_equal(sample_extra, sample_obs[:, 0] / 2 * 100)
