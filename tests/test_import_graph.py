"""Imports go one way, down the floors of tests/import_graph.py, with no cycles.

``KNOWN`` lists what still breaks that (issue 18's remaining work: the rollout loops and
checkpoint loading still live in ``cli/``, a floor above the stack packages that use them). The
test fails on anything new, and on anything fixed but still listed, so the list only shrinks.
"""

from __future__ import annotations

from import_graph import FLOORS, cycles, floor_of, import_graph, upward

P = "rllib_saliency."
KNOWN_UPWARD = {
    (P + "movie.rollout", P + "cli.errors"),
    (P + "movie.rollout", P + "cli.new_stack_rollout"),
    (P + "movie.rollout", P + "cli.rollout"),
    (P + "stacks.new", P + "cli.new_stack_rollout"),
}
KNOWN_CYCLES = {
    frozenset({P + "cli.checkpoint", P + "cli.new_stack"}),
    # Through movie.rollout's upward imports above.
    frozenset(
        P + name
        for name in (
            "cli.new_stack_rollout",
            "cli.rollout",
            "movie",
            "movie.data",
            "movie.frames",
            "movie.page",
            "movie.rollout",
            "stacks.old",
        )
    ),
}


def test_every_module_is_on_a_floor():
    graph = import_graph()
    assert len(graph) > 50
    floors = {module: floor_of(module) for module in graph}
    order = [floors[P + name] for name in ("errors", "backends.torch", "engine", "stacks.new", "cli.main")]
    assert order == sorted(order) and len(set(order)) == 5
    assert len(FLOORS) == 5


def test_no_upward_import_but_the_known_ones():
    assert set(upward(import_graph())) == KNOWN_UPWARD


def test_no_cycle_but_the_known_ones():
    assert {frozenset(cycle) for cycle in cycles(import_graph())} == KNOWN_CYCLES


def test_the_check_sees_an_upward_import_and_a_cycle():
    graph = {P + "engine": {P + "cli.main"}, P + "cli.main": {P + "engine"}, P + "backends": set()}
    assert upward(graph) == [(P + "engine", P + "cli.main")]
    assert cycles(graph) == [[P + "cli.main", P + "engine"]]
