"""treasury.heap: what a process built at start is frozen, so full collections stop walking it."""

from __future__ import annotations

import gc

from treasury.heap import freeze_startup_heap


def test_the_start_up_heap_is_frozen_and_new_objects_are_still_collected() -> None:
    try:
        frozen = freeze_startup_heap()
        assert frozen == gc.get_freeze_count() > 1000  # this test process's modules at least
        cycle: list[object] = []
        cycle.append(cycle)  # garbage only a collection can free
        del cycle
        assert gc.collect() >= 1  # made after the freeze: collected as before
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
