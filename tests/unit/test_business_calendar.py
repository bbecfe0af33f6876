"""The business calendar (treasury/business_calendar.py): the Federal Reserve Banks' holiday rules,
the ``weekdays`` calendar and ``BUSINESS_CALENDAR``; expected dates from federalreserve.gov's
"Federal Reserve Bank Holidays" schedules."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from actors.settlement import following_business_day, next_business_day
from serve_app.job.bank.model import previous_business_day, seed_plan
from treasury import business_calendar
from treasury.business_calendar import FED, WEEKDAYS, calendar, fed_holidays
from treasury.settings import ConfigError, RuntimeSettings, business_calendar_from_env

# 2025: every one of the 11 holidays falls on a weekday, so every one is observed on its day.
FED_2025 = {
    date(2025, 1, 1): "New Year's Day",
    date(2025, 1, 20): "Birthday of Martin Luther King, Jr.",
    date(2025, 2, 17): "Washington's Birthday",
    date(2025, 5, 26): "Memorial Day",
    date(2025, 6, 19): "Juneteenth National Independence Day",
    date(2025, 7, 4): "Independence Day",
    date(2025, 9, 1): "Labor Day",
    date(2025, 10, 13): "Columbus Day",
    date(2025, 11, 11): "Veterans Day",
    date(2025, 11, 27): "Thanksgiving Day",
    date(2025, 12, 25): "Christmas Day",
}


def test_the_eleven_holidays_of_2025() -> None:
    assert fed_holidays(2025) == FED_2025
    for day, name in FED_2025.items():
        assert not FED.is_business_day(day) and FED.holiday(day) == name and FED.why_closed(day) == name
        assert WEEKDAYS.is_business_day(day) and WEEKDAYS.holiday(day) is None
    # every other weekday of the year is a business day
    weekdays = [date(2025, 1, 1) + timedelta(days=n) for n in range(365)]
    open_days = [d for d in weekdays if d.weekday() < 5 and d not in FED_2025]
    assert all(FED.is_business_day(d) for d in open_days) and len(open_days) == 261 - 11


@pytest.mark.parametrize(("year", "closed"), [
    # 2024: as published
    (2024, [date(2024, 1, 1), date(2024, 1, 15), date(2024, 2, 19), date(2024, 5, 27), date(2024, 6, 19),
            date(2024, 7, 4), date(2024, 9, 2), date(2024, 10, 14), date(2024, 11, 11), date(2024, 11, 28),
            date(2024, 12, 25)]),
    # 2027: Juneteenth and Christmas on a Saturday (open the Friday before), July 4 on a Sunday (closed Monday)
    (2027, [date(2027, 1, 1), date(2027, 1, 18), date(2027, 2, 15), date(2027, 5, 31), date(2027, 7, 5),
            date(2027, 9, 6), date(2027, 10, 11), date(2027, 11, 11), date(2027, 11, 25)]),
])
def test_published_schedules(year: int, closed: list[date]) -> None:
    assert sorted(fed_holidays(year)) == closed


@pytest.mark.parametrize(("holiday", "observed"), [
    (date(2022, 6, 19), date(2022, 6, 20)),  # Juneteenth, its first year for the Fed
    (date(2022, 12, 25), date(2022, 12, 26)),  # Christmas Day
    (date(2023, 1, 1), date(2023, 1, 2)),  # New Year's Day
    (date(2027, 7, 4), date(2027, 7, 5)),  # Independence Day
    (date(2029, 11, 11), date(2029, 11, 12)),  # Veterans Day
])
def test_a_fixed_date_holiday_on_a_sunday_is_observed_the_monday_after(holiday: date, observed: date) -> None:
    assert holiday.weekday() == 6 and observed.weekday() == 0
    assert FED.why_closed(holiday) == "Sunday" and FED.holiday(holiday) is None
    assert FED.holiday(observed) == fed_holidays(holiday.year)[observed]
    assert not FED.is_business_day(observed) and FED.next_business_day(observed - timedelta(days=3)) == \
        observed + timedelta(days=1)


@pytest.mark.parametrize(("holiday", "name"), [
    (date(2026, 7, 4), "Independence Day"),
    (date(2023, 11, 11), "Veterans Day"),
    (date(2027, 6, 19), "Juneteenth National Independence Day"),
    (date(2027, 12, 25), "Christmas Day"),
    (date(2022, 1, 1), "New Year's Day"),
])
def test_a_fixed_date_holiday_on_a_saturday_is_not_observed(holiday: date, name: str) -> None:
    friday, monday = holiday - timedelta(days=1), holiday + timedelta(days=2)
    assert holiday.weekday() == 5
    assert FED.is_business_day(friday) and FED.is_business_day(monday)  # the Fed is open both
    assert name not in fed_holidays(holiday.year).values()
    assert FED.why_closed(holiday) == "Saturday"


def test_new_year_on_a_saturday_leaves_the_last_day_of_the_year_open() -> None:
    assert FED.is_business_day(date(2021, 12, 31))  # January 1 2022 is a Saturday
    assert FED.next_business_day(date(2021, 12, 30)) == date(2021, 12, 31)
    assert FED.next_business_day(date(2021, 12, 31)) == date(2022, 1, 3)
    # across the boundary the other way: Christmas and New Year on Fridays (2026/2027)
    assert FED.next_business_day(date(2026, 12, 31)) == date(2027, 1, 4)
    assert FED.next_business_day(date(2026, 12, 24)) == date(2026, 12, 28)
    # Sunday January 1 2023: observed on Monday January 2, still in its own year
    assert FED.next_business_day(date(2022, 12, 30)) == date(2023, 1, 3)


def test_juneteenth_from_2022() -> None:
    assert "Juneteenth National Independence Day" not in fed_holidays(2021).values()
    assert FED.is_business_day(date(2021, 6, 18))  # the Friday before a Saturday June 19
    assert FED.holiday(date(2022, 6, 20)) == "Juneteenth National Independence Day"  # Sunday -> Monday
    assert FED.holiday(date(2023, 6, 19)) == "Juneteenth National Independence Day"
    assert FED.is_business_day(date(2020, 6, 19))  # a Friday before it was a holiday


@pytest.mark.parametrize(("year", "thanksgiving"), [
    (2018, date(2018, 11, 22)),  # November starts on a Thursday: not the 29th, a fifth Thursday
    (2024, date(2024, 11, 28)),  # November starts on a Friday
    (2025, date(2025, 11, 27)),
    (2029, date(2029, 11, 22)),
])
def test_thanksgiving_is_the_fourth_thursday(year: int, thanksgiving: date) -> None:
    assert fed_holidays(year)[thanksgiving] == "Thanksgiving Day"
    assert FED.is_business_day(thanksgiving + timedelta(days=1))  # the Fed is open the Friday after


@pytest.mark.parametrize(("year", "memorial"), [
    (2021, date(2021, 5, 31)),  # May 2021 has five Mondays (3, 10, ..., 31)
    (2027, date(2027, 5, 31)),  # so does May 2027
    (2026, date(2026, 5, 25)),  # four: 4, 11, 18, 25
])
def test_memorial_day_is_the_last_monday_of_may(year: int, memorial: date) -> None:
    assert fed_holidays(year)[memorial] == "Memorial Day"
    assert FED.is_business_day(memorial - timedelta(days=7))


def test_the_monday_holidays_by_rule() -> None:
    assert FED.holiday(date(2026, 1, 19)) == "Birthday of Martin Luther King, Jr."  # third Monday
    assert FED.holiday(date(2026, 2, 16)) == "Washington's Birthday"  # third Monday
    assert FED.holiday(date(2026, 9, 7)) == "Labor Day"  # first Monday
    assert FED.holiday(date(2026, 10, 12)) == "Columbus Day"  # second Monday
    assert FED.is_business_day(date(2026, 4, 3))  # Good Friday: the markets close, the Fed does not


def test_weekends_are_never_business_days() -> None:
    for cal in (FED, WEEKDAYS):
        assert not cal.is_business_day(date(2026, 3, 7)) and not cal.is_business_day(date(2026, 3, 8))
        assert cal.why_closed(date(2026, 3, 7)) == "Saturday" and cal.why_closed(date(2026, 3, 8)) == "Sunday"
        assert cal.holiday(date(2026, 3, 7)) is None and cal.why_closed(date(2026, 3, 9)) is None
        assert cal.next_business_day(date(2026, 3, 6)) == date(2026, 3, 9)
        assert cal.following(date(2026, 3, 7)) == date(2026, 3, 9)
        assert cal.following(date(2026, 3, 9)) == date(2026, 3, 9)


def test_next_and_following_across_long_weekends() -> None:
    # Thanksgiving: the Friday after is a business day for the Fed
    assert FED.next_business_day(date(2025, 11, 26)) == date(2025, 11, 28)
    assert FED.following(date(2025, 11, 27)) == date(2025, 11, 28)
    # Christmas on a Friday: Monday
    assert FED.following(date(2026, 12, 25)) == date(2026, 12, 28)
    assert FED.following(date(2026, 12, 26)) == date(2026, 12, 28)
    # a Monday holiday after a weekend: Tuesday
    assert FED.next_business_day(date(2025, 8, 29)) == date(2025, 9, 2)  # Labor Day
    assert FED.next_business_day(date(2025, 5, 23)) == date(2025, 5, 27)  # Memorial Day


def test_the_weekdays_calendar_has_no_holidays() -> None:
    assert WEEKDAYS.name == "weekdays" and FED.name == "fed"
    assert WEEKDAYS.following(date(2026, 12, 25)) == date(2026, 12, 25)
    assert WEEKDAYS.next_business_day(date(2025, 11, 26)) == date(2025, 11, 27)
    assert WEEKDAYS.next_business_day(date(2026, 12, 31)) == date(2027, 1, 1)
    assert all(WEEKDAYS.is_business_day(d) for d in FED_2025)


def test_settlement_and_the_demo_bank_use_the_same_calendar(monkeypatch: pytest.MonkeyPatch) -> None:
    assert next_business_day(date(2026, 12, 24), FED) == date(2026, 12, 28)
    assert next_business_day(date(2026, 12, 24), WEEKDAYS) == date(2026, 12, 25)
    assert following_business_day(date(2026, 12, 25), FED) == date(2026, 12, 28)
    assert previous_business_day(date(2025, 12, 26), FED) == date(2025, 12, 24)
    assert previous_business_day(date(2025, 12, 26), WEEKDAYS) == date(2025, 12, 25)
    monkeypatch.delenv("BUSINESS_CALENDAR", raising=False)
    assert next_business_day(date(2026, 12, 24)) == date(2026, 12, 28)  # the default: the Fed's
    assert previous_business_day(date(2025, 11, 28)) == date(2025, 11, 26)
    monkeypatch.setenv("BUSINESS_CALENDAR", "weekdays")
    assert following_business_day(date(2026, 12, 25)) == date(2026, 12, 25)
    assert previous_business_day(date(2025, 11, 28)) == date(2025, 11, 27)


def test_the_demo_banks_seeded_past_skips_fed_holidays() -> None:
    plan = seed_plan(date(2025, 12, 26), calendar=FED)  # a Friday after Christmas Day
    assert plan.live_from == date(2025, 12, 26) and date(2025, 12, 24) in plan.sweep_days
    assert all(FED.is_business_day(d) for d in plan.sweep_days)
    assert date(2025, 12, 25) in seed_plan(date(2025, 12, 26), calendar=WEEKDAYS).sweep_days
    assert seed_plan(date(2025, 12, 25), calendar=FED).live_from == date(2025, 12, 24)  # today a holiday
    assert seed_plan(date(2025, 12, 25), calendar=WEEKDAYS).live_from == date(2025, 12, 25)


def test_calendars_by_name() -> None:
    assert calendar("fed") is FED and calendar("weekdays") is WEEKDAYS
    with pytest.raises(ValueError, match="fed, weekdays"):
        calendar("nyse")


def test_business_calendar_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert RuntimeSettings.from_env({}).business_calendar == "fed"
    assert RuntimeSettings.from_env({}).as_env()["BUSINESS_CALENDAR"] == "fed"  # every process gets it
    weekdays = RuntimeSettings.from_env({"BUSINESS_CALENDAR": "weekdays"})
    assert weekdays.business_calendar == "weekdays" and weekdays.as_env()["BUSINESS_CALENDAR"] == "weekdays"
    assert "BUSINESS_CALENDAR" in RuntimeSettings.env_keys(include_driver_only=False)
    for bad in ("nyse", "FED", " fed", "target2"):
        with pytest.raises(ConfigError, match=r"^BUSINESS_CALENDAR: .*must be one of fed, weekdays"):
            RuntimeSettings.from_env({"BUSINESS_CALENDAR": bad})
        with pytest.raises(ConfigError, match=r"^BUSINESS_CALENDAR: .*fed, weekdays"):
            business_calendar_from_env({"BUSINESS_CALENDAR": bad})
    assert business_calendar_from_env({}) is FED
    assert business_calendar_from_env({"BUSINESS_CALENDAR": "weekdays"}) is WEEKDAYS
    monkeypatch.setenv("BUSINESS_CALENDAR", "weekdays")
    assert business_calendar.active() is WEEKDAYS and business_calendar_from_env() is WEEKDAYS
    monkeypatch.setenv("BUSINESS_CALENDAR", "")
    assert business_calendar.active() is FED  # empty is unset, as RuntimeSettings.from_env reads it
