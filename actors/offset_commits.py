"""When a shard commits its consumed offsets: at most every ``OFFSET_COMMIT_INTERVAL_MS``, and when idle.

Every offset handed in here stands for events already durable in the ledger (the shard's loop
commits last), so committing later never loses an event: a crash replays the events since the last
commit, which the ledger recognises as duplicates and the coordinator's unique decision key keeps
from becoming second orders. Committing after every batch, on the other hand, costs the broker a
write to ``__consumer_offsets`` per batch: at 1,000 events/s in batches of a few events, that was a
third of the broker's CPU on a 2-core machine (docs/performance.md), taken from the shards.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class OffsetCommits:
    """The offsets waiting to be committed, per partition, and whether it is time to commit them."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if interval_s < 0:
            raise ValueError(f"the commit interval must be 0 s or more (got {interval_s})")
        self.interval_s = interval_s
        self._clock = clock
        self._pending: dict[int, int] = {}
        self._last: float | None = None  # nothing committed yet: the first batch commits at once

    def add(self, offsets: dict[int, int]) -> None:
        """A batch's next offsets; a later batch of a partition supersedes an earlier one."""
        self._pending.update(offsets)

    def due(self, *, idle: bool = False) -> dict[int, int]:
        """The offsets to commit now (taken: they are no longer pending), or ``{}``: now when the
        interval has passed since the last commit, or at once when the shard is ``idle`` (nothing
        consumed), so that a quiet partition's committed offset does not lag behind."""
        if not self._pending:
            return {}
        now = self._clock()
        if not idle and self._last is not None and now - self._last < self.interval_s:
            return {}
        taken, self._pending, self._last = self._pending, {}, now
        return taken

    def forget(self) -> None:
        """A rewind reads again from the committed offsets; what was pending is replayed, not committed."""
        self._pending.clear()

    @property
    def pending(self) -> dict[int, int]:
        return dict(self._pending)
