"""The evolution history: bounded columns, weighted pair merges, append-only file replay."""

from __future__ import annotations

import numpy as np

from rllib_saliency.history import EvolutionHistory


def test_columns_stay_bounded_and_merges_are_weighted_means():
    history = EvolutionHistory(max_columns=4)
    for i in range(20):
        history.add("a", 10 * i, [float(i), 1.0])
    series = history["a"]
    # 8 columns of 1 merge into 4 of 2; 4 more of 2 merge into 4 of 4; 20 = 4 + 4 + 4 + 4 + 4.
    assert history.computations == 20 == series.computations
    assert series.width == 4 and series.weights == [4, 4, 4, 4, 4]
    # Evenly spaced: each column starts 4 computations after the previous one.
    assert series.steps == [0, 40, 80, 120, 160]
    # Each column is the mean of its computations.
    np.testing.assert_allclose(series.values, [[1.5 + 4 * c, 1.0] for c in range(5)])
    history.add("a", 200, [21.0, 1.0])  # a new column that fills up from here
    assert series.weights[-1] == 1 and series.values[-1] == [21.0, 1.0]


def test_file_replay_gives_the_same_history_and_stays_small(tmp_path):
    path = str(tmp_path / "history.jsonl")
    live = EvolutionHistory(path, max_columns=8)
    rng = np.random.default_rng(0)
    for i in range(100):
        live.add("p/action/gradient", i, rng.random(3).tolist())
        if i % 3 == 0:
            live.add("p/value/gradient", i, rng.random(3).tolist())
    replayed = EvolutionHistory(path, max_columns=8)
    assert replayed.computations == live.computations == 100
    for key in ("p/action/gradient", "p/value/gradient"):
        assert replayed[key].steps == live[key].steps
        assert replayed[key].weights == live[key].weights
        np.testing.assert_allclose(replayed[key].values, live[key].values)
    # The file is compacted now and then: at most the columns plus 2 × max_columns
    # appended lines per series, not one line per computation.
    with open(path) as file:
        assert len(file.readlines()) <= 2 * 8 * 2 + 2 * 8 * 2


def test_an_unreadable_line_is_skipped_and_counted(tmp_path):
    path = tmp_path / "history.jsonl"
    live = EvolutionHistory(str(path))
    live.add("k", 1, [1.0])
    live.add("k", 2, [2.0])
    with open(path, "a") as file:
        file.write('{"key": "k", "step": 3, "wei')  # cut short by a crash
    replayed = EvolutionHistory(str(path))
    assert replayed["k"].steps == [1, 2] and replayed.unreadable_lines == 1


def test_attach_writes_what_was_gathered_before(tmp_path):
    history = EvolutionHistory()
    history.add("k", 1, [1.0])
    history.attach(str(tmp_path / "h.jsonl"))
    history.add("k", 2, [3.0])
    assert EvolutionHistory(str(tmp_path / "h.jsonl"))["k"].values == [[1.0], [3.0]]
