"""Business days: when cut-offs count and investments mature (``BUSINESS_CALENDAR``).

Why our own rule set: sweeps move through Fedwire and FedACH, which follow the Federal Reserve
Banks' holiday schedule. It differs from the stock market's (no Good Friday; Columbus and
Veterans Day are holidays) and from the federal government's (a holiday on a Saturday is *not*
moved to the Friday: the Fed is open that Friday). The rules, from the Federal Reserve's own
schedule (federalreserve.gov, "Federal Reserve Bank Holidays", and the Board's rules K-8):

* New Year's Day (January 1), Juneteenth (June 19, since 2022), Independence Day (July 4),
  Veterans Day (November 11) and Christmas Day (December 25) on their date;
* Martin Luther King Jr. Day (third Monday of January), Washington's Birthday (third Monday of
  February), Memorial Day (last Monday of May), Labor Day (first Monday of September), Columbus
  Day (second Monday of October) and Thanksgiving Day (fourth Thursday of November);
* a fixed-date holiday on a **Sunday** is observed the following Monday; on a **Saturday** it is
  not observed at all (the Fed is open the Friday before);
* Saturdays and Sundays are never business days.

``weekdays`` (Monday to Friday, no holidays) is the other choice, for tests and for accounts whose
bank does not follow the Fed. The calendar is chosen per process from ``BUSINESS_CALENDAR``
(every part gets the same environment), so the shards, the REST tier and the CLI agree.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

CALENDARS: Final = ("fed", "weekdays")
DEFAULT_CALENDAR: Final = "fed"
JUNETEENTH_FROM: Final = 2022  # first year the Federal Reserve Banks closed for it


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The ``n``-th ``weekday`` (Monday 0) of the month; ``n`` = -1 for the last."""
    if n > 0:
        first = date(year, month, 1)
        return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    last = (date(year, month + 1, 1) if month < 12 else date(year + 1, 1, 1)) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: date) -> date | None:
    """The Fed's rule for a fixed-date holiday: Sunday -> Monday, Saturday -> not observed."""
    if day.weekday() == 6:
        return day + timedelta(days=1)
    if day.weekday() == 5:
        return None
    return day


@functools.lru_cache(maxsize=256)
def fed_holidays(year: int) -> dict[date, str]:
    """The days the Federal Reserve Banks are closed in ``year`` (weekdays only), with their names."""
    fixed = [(date(year, 1, 1), "New Year's Day"), (date(year, 7, 4), "Independence Day"),
             (date(year, 11, 11), "Veterans Day"), (date(year, 12, 25), "Christmas Day")]
    if year >= JUNETEENTH_FROM:
        fixed.append((date(year, 6, 19), "Juneteenth National Independence Day"))
    out = {observed: name for day, name in fixed if (observed := _observed(day)) is not None}
    out.update({
        _nth_weekday(year, 1, 0, 3): "Birthday of Martin Luther King, Jr.",
        _nth_weekday(year, 2, 0, 3): "Washington's Birthday",
        _nth_weekday(year, 5, 0, -1): "Memorial Day",
        _nth_weekday(year, 9, 0, 1): "Labor Day",
        _nth_weekday(year, 10, 0, 2): "Columbus Day",
        _nth_weekday(year, 11, 3, 4): "Thanksgiving Day",
    })
    return out


@dataclass(frozen=True)
class BusinessCalendar:
    name: str
    _holiday: Callable[[date], str | None]

    def holiday(self, day: date) -> str | None:
        """The holiday's name when ``day`` is a weekday the banks are closed, else None."""
        return None if day.weekday() >= 5 else self._holiday(day)

    def is_business_day(self, day: date) -> bool:
        return day.weekday() < 5 and self._holiday(day) is None

    def next_business_day(self, day: date) -> date:
        """The first business day after ``day``."""
        day += timedelta(days=1)
        while not self.is_business_day(day):
            day += timedelta(days=1)
        return day

    def following(self, day: date) -> date:
        """``day`` when it is a business day, else the next one (the 'following' convention)."""
        return day if self.is_business_day(day) else self.next_business_day(day)

    def why_closed(self, day: date) -> str | None:
        """Why ``day`` is no business day ("Saturday", "Christmas Day"), or None."""
        if day.weekday() >= 5:
            return day.strftime("%A")
        return self._holiday(day)


FED = BusinessCalendar("fed", lambda day: fed_holidays(day.year).get(day))
WEEKDAYS = BusinessCalendar("weekdays", lambda day: None)
_BY_NAME: Final = {FED.name: FED, WEEKDAYS.name: WEEKDAYS}


def calendar(name: str) -> BusinessCalendar:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown business calendar {name!r}; one of {', '.join(CALENDARS)}") from None


def active() -> BusinessCalendar:
    """The calendar of this process: ``BUSINESS_CALENDAR`` (validated at start by the settings)."""
    return calendar(os.environ.get("BUSINESS_CALENDAR") or DEFAULT_CALENDAR)
