"""UTC time and sweep cut-off arithmetic.

Every timestamp the service handles is timezone-aware UTC and is written ISO-8601 with ``Z``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Refuse naive datetimes instead of guessing their zone: a wrong guess shifts a cut-off."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp has no timezone; send ISO-8601 with Z or an offset")
    return value.astimezone(UTC)


def iso_z(value: datetime) -> str:
    """ISO-8601 UTC with millisecond precision and a ``Z`` suffix, as in spec 3.1."""
    utc = as_utc(value)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_cutoff(text: str) -> time:
    """``HH:MM`` (24 h, UTC) -> ``time``; the error names the offending value."""
    parts = text.strip().split(":")
    if len(parts) != 2 or not all(p.isdigit() and len(p) == 2 for p in parts):
        raise ValueError(f"cut-off {text!r} is not HH:MM")
    hour, minute = int(parts[0]), int(parts[1])
    if hour > 23 or minute > 59:
        raise ValueError(f"cut-off {text!r} is not a time of day")
    return time(hour, minute, tzinfo=UTC)


def next_cutoff(now: datetime, cutoffs: Sequence[time]) -> datetime:
    """The first cut-off strictly after ``now``: an order created at a cut-off misses it."""
    if not cutoffs:
        raise ValueError("no sweep cut-offs configured")
    current = as_utc(now)
    today = current.date()
    best: datetime | None = None
    for cutoff in cutoffs:
        candidate = datetime.combine(today, cutoff.replace(tzinfo=None), tzinfo=UTC)
        if candidate <= current:
            candidate += timedelta(days=1)
        if best is None or candidate < best:
            best = candidate
    assert best is not None
    return best
