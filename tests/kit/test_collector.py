"""`tuned_garbage_collection`: the startup heap frozen out of the collector's sight and
rarer young collections while a block runs, everything restored after it."""

from __future__ import annotations

import gc

import pytest

from billfold.kit.collector import tuned_garbage_collection


def test_the_tuning_freezes_the_heap_and_raises_the_threshold_until_the_block_ends() -> None:
    before = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    startup: list[object] = []  # a container: tracked by the collector
    with tuned_garbage_collection(12_345):
        assert gc.get_threshold() == (12_345, *before[1:])
        assert gc.get_freeze_count() > frozen_before
        assert not any(startup is o for o in gc.get_objects())  # frozen: out of sight
        later: list[object] = []
        assert any(later is o for o in gc.get_objects())  # made inside: still collected
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    assert any(startup is o for o in gc.get_objects())


def test_the_tuning_is_undone_when_the_block_raises() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), tuned_garbage_collection(50_000):
        raise RuntimeError("stop")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
