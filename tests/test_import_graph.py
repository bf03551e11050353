"""Imports go one way, down the floors of tests/import_graph.py, with no cycles.

``KNOWN_UPWARD``/``KNOWN_CYCLES`` list what still breaks that: nothing since issue 18 moved each
stack's checkpoint loading and rollout loops from ``cli/`` into its stack package. The test fails
on anything new, and on anything fixed but still listed, so the lists only shrink.
"""

from __future__ import annotations

from import_graph import FLOORS, cycles, floor_of, import_graph, upward

P = "rllib_saliency."
# What still breaks the rule, if anything: the test fails on anything new, and on anything fixed
# but still listed, so these only shrink. Issue 18 emptied them.
KNOWN_UPWARD: set[tuple[str, str]] = set()
KNOWN_CYCLES: set[frozenset[str]] = set()


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
