"""A shard commits its offsets at most every OFFSET_COMMIT_INTERVAL_MS, at once when idle, never a stale one."""

from __future__ import annotations

import pytest

from actors.offset_commits import OffsetCommits
from treasury.settings import ConfigError, RuntimeSettings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_first_batch_commits_at_once_and_the_next_waits_for_the_interval() -> None:
    clock = Clock()
    commits = OffsetCommits(0.2, clock)
    commits.add({0: 10})
    assert commits.due() == {0: 10}
    commits.add({0: 15, 1: 3})
    clock.now += 0.1
    assert commits.due() == {}
    assert commits.pending == {0: 15, 1: 3}


def test_after_the_interval_the_newest_offset_of_every_partition_is_committed() -> None:
    clock = Clock()
    commits = OffsetCommits(0.2, clock)
    commits.add({0: 10})
    commits.due()
    commits.add({0: 12})
    commits.add({0: 20, 2: 7})  # a later batch of partition 0 supersedes the earlier one
    clock.now += 0.2
    assert commits.due() == {0: 20, 2: 7}
    assert commits.pending == {}
    assert commits.due() == {}  # nothing is committed twice


def test_an_idle_shard_commits_what_is_pending_before_the_interval() -> None:
    clock = Clock()
    commits = OffsetCommits(60.0, clock)
    commits.add({1: 5})
    commits.due()
    commits.add({1: 9})
    assert commits.due() == {}
    assert commits.due(idle=True) == {1: 9}
    assert commits.due(idle=True) == {}


def test_zero_commits_after_every_batch() -> None:
    commits = OffsetCommits(0.0, Clock())
    for offset in (1, 2, 3):
        commits.add({0: offset})
        assert commits.due() == {0: offset}


def test_a_rewind_forgets_the_pending_offsets_so_they_are_replayed_not_committed() -> None:
    commits = OffsetCommits(60.0, Clock())
    commits.add({0: 1})
    commits.due()
    commits.add({0: 4})
    commits.forget()
    assert commits.due(idle=True) == {}


def test_a_negative_interval_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="commit interval must be 0 s or more"):
        OffsetCommits(-1.0)


def test_the_setting_defaults_to_200_ms_reaches_the_actors_and_refuses_a_bad_value_by_name() -> None:
    assert RuntimeSettings().offset_commit_interval_ms == 200
    assert "OFFSET_COMMIT_INTERVAL_MS" in RuntimeSettings.env_keys(include_driver_only=False)
    assert RuntimeSettings.from_env({"OFFSET_COMMIT_INTERVAL_MS": "0"}).offset_commit_interval_ms == 0
    for bad in ("-1", "60001", "soon"):
        with pytest.raises(ConfigError) as refused:
            RuntimeSettings.from_env({"OFFSET_COMMIT_INTERVAL_MS": bad})
        assert str(refused.value).startswith("OFFSET_COMMIT_INTERVAL_MS: ")
