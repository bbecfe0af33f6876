"""UTC time and sweep cut-off arithmetic.

Every timestamp the service handles is timezone-aware UTC and is written ISO-8601 with ``Z``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta

from treasury import business_calendar
from treasury.business_calendar import BusinessCalendar


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Refuse naive datetimes instead of guessing their zone: a wrong guess shifts a cut-off."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp has no timezone; send ISO-8601 with Z or an offset")
    return value.astimezone(UTC)


def iso_z(value: datetime) -> str:
    """ISO-8601 UTC with millisecond precision and a ``Z`` suffix, as in spec 3.1."""
    # isoformat, not strftime: the same text, several times faster (every order and position has some)
    return as_utc(value).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def parse_cutoff(text: str) -> time:
    """``HH:MM`` (24 h, UTC) -> ``time``; the error names the offending value."""
    parts = text.strip().split(":")
    if len(parts) != 2 or not all(p.isdigit() and len(p) == 2 for p in parts):
        raise ValueError(f"cut-off {text!r} is not HH:MM")
    hour, minute = int(parts[0]), int(parts[1])
    if hour > 23 or minute > 59:
        raise ValueError(f"cut-off {text!r} is not a time of day")
    return time(hour, minute, tzinfo=UTC)


def next_cutoff(now: datetime, cutoffs: Sequence[time], calendar: BusinessCalendar | None = None) -> datetime:
    """The first cut-off strictly after ``now`` on a business day of ``calendar`` (the active one,
    ``BUSINESS_CALENDAR``, by default): an order created at a cut-off misses it, and a decision on a
    Saturday or a holiday, or after the last cut-off of the day before one, gets the first cut-off of
    the next business day. A cut-off's day is its UTC date."""
    if not cutoffs:
        raise ValueError("no sweep cut-offs configured")
    current = as_utc(now)
    today, following = _cutoffs_of_day(current.date(), tuple(cutoffs), calendar or business_calendar.active())
    for candidate in today:
        if candidate > current:
            return candidate
    return following


@functools.lru_cache(maxsize=64)
def _cutoffs_of_day(day: date, cutoffs: tuple[time, ...],
                    days: BusinessCalendar) -> tuple[tuple[datetime, ...], datetime]:
    """``day``'s cut-offs in order (none when it is closed) and the first cut-off of the next business
    day: worked out once per day and configuration, as every decision of the day asks the same."""
    times = sorted(cutoff.replace(tzinfo=None) for cutoff in cutoffs)
    today = tuple(datetime.combine(day, t, tzinfo=UTC) for t in times) if days.is_business_day(day) else ()
    return today, datetime.combine(days.next_business_day(day), times[0], tzinfo=UTC)


def skipped_days(
    now: datetime, cutoffs: Sequence[time], calendar: BusinessCalendar | None = None
) -> list[tuple[date, str]]:
    """The days ``next_cutoff`` passed over for not being business days, with why ("Saturday",
    "Christmas Day"): each day from ``now``'s on that had a cut-off after ``now``; empty when the
    cut-off is the one a calendar without closed days would give."""
    days = calendar or business_calendar.active()
    current = as_utc(now)
    chosen = next_cutoff(current, cutoffs, days).date()
    today = current.date()
    later_today = any(datetime.combine(today, c.replace(tzinfo=None), tzinfo=UTC) > current for c in cutoffs)
    out: list[tuple[date, str]] = []
    day = today if later_today else today + timedelta(days=1)
    while day < chosen:
        why = days.why_closed(day)
        if why is not None:
            out.append((day, why))
        day += timedelta(days=1)
    return out
