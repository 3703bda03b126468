"""services/runtime/heap.py: long-lived state leaves the collector's passes, is still freed
when dropped, and a frozen cycle is reclaimed by the periodic full pass."""

from __future__ import annotations

import gc
import weakref

import pytest

from services.runtime import heap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture(autouse=True)
def _thaw():
    yield
    gc.unfreeze()  # the rest of the suite runs with the collector as it was
    gc.enable()


def test_bulk_load_runs_without_passes_then_freezes_the_state():
    gc.unfreeze()
    assert gc.isenabled()
    with heap.bulk_load():
        assert not gc.isenabled()
        state = [Node() for _ in range(1000)]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(state)


def test_a_frozen_object_is_still_freed_by_reference_counting_when_dropped():
    row = Node()
    gone = weakref.ref(row)
    heap.keep_long_lived()
    del row
    assert gone() is None


def test_a_frozen_cycle_dropped_later_is_reclaimed_by_the_next_full_pass(monkeypatch):
    first, second = Node(), Node()
    first.other, second.other = second, first  # a cycle: reference counting cannot free it
    gone = weakref.ref(first)
    heap.keep_long_lived()  # frozen while alive
    del first, second
    gc.collect()
    assert gone() is not None, "frozen: the collector does not see it"
    monkeypatch.setattr(heap, "FULL_PASS_EVERY_S", 0.0)
    heap.keep_long_lived()
    assert gone() is None


def test_growth_freezes_what_came_in_once_the_budget_is_reached():
    gc.unfreeze()
    growth = heap.Growth(budget=3)
    rows = []
    for _ in range(2):
        rows.append([Node() for _ in range(100)])
        growth.grew(1)
    assert growth.freezes == 0
    assert gc.get_freeze_count() < 200, "under the budget: nothing frozen yet"
    rows.append([Node() for _ in range(100)])
    growth.grew(1)
    assert growth.freezes == 1
    assert gc.get_freeze_count() >= 300
    growth.grew(2)
    assert growth.freezes == 1, "the budget counts again from the freeze"


def test_growth_leaves_the_collector_alone_during_a_bulk_load():
    gc.unfreeze()
    growth = heap.Growth(budget=1)
    with heap.bulk_load():
        growth.grew(5)
        assert growth.freezes == 0
