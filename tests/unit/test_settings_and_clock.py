from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from treasury.business_calendar import FED, WEEKDAYS, BusinessCalendar
from treasury.clock import as_utc, iso_z, next_cutoff, parse_cutoff, skipped_days
from treasury.money import fmt, quantize_down, to_decimal
from treasury.settings import ConfigError, PolicyConfig, RuntimeSettings, policy_from_env, policy_from_mapping


def test_defaults_match_the_spec() -> None:
    c = PolicyConfig()
    assert Decimal("0.30") == c.LIQ_BUFFER_PCT and Decimal("10") == c.VAR_LIMIT_BPS
    assert c.SWEEP_CUTOFFS_UTC == ("00:30", "15:30") and c.TARGET_LADDER_DAYS == 28
    assert Decimal("100000") == c.MIN_SWEEP_USD


def test_env_overrides_in_the_spec_notation() -> None:
    c = policy_from_env({"LIQ_BUFFER_PCT": "0.5", "SWEEP_CUTOFFS_UTC": "['15:30','00:30', '09:00']",
                         "TARGET_LADDER_DAYS": "14", "PATH": "/bin"})
    assert Decimal("0.5") == c.LIQ_BUFFER_PCT and c.SWEEP_CUTOFFS_UTC == ("00:30", "09:00", "15:30")
    assert policy_from_env({"SWEEP_CUTOFFS_UTC": "00:30, 15:30"}).SWEEP_CUTOFFS_UTC == ("00:30", "15:30")


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"LIQ_BUFFER_PCT": "1.5"}, "LIQ_BUFFER_PCT"),
        ({"LIQ_BUFFER_PCT": "abc"}, "LIQ_BUFFER_PCT"),
        ({"VAR_LIMIT_BPS": "-1"}, "VAR_LIMIT_BPS"),
        ({"SWEEP_CUTOFFS_UTC": "25:00"}, "SWEEP_CUTOFFS_UTC"),
        ({"SWEEP_CUTOFFS_UTC": "[]"}, "SWEEP_CUTOFFS_UTC"),
        ({"SWEEP_CUTOFFS_UTC": "10:00,10:00"}, "SWEEP_CUTOFFS_UTC"),
        ({"TARGET_LADDER_DAYS": "0"}, "TARGET_LADDER_DAYS"),
        ({"MIN_SWEEP_USD": "0"}, "MIN_SWEEP_USD"),
        ({"NOPE": "1"}, "NOPE"),
    ],
)
def test_bad_values_are_refused_naming_the_key(values: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{key}"):
        policy_from_mapping(values)


def test_float_values_do_not_leak_binary_noise() -> None:
    assert Decimal("0.1") == policy_from_mapping({"LIQ_BUFFER_PCT": 0.1}).LIQ_BUFFER_PCT
    assert PolicyConfig().as_wire()["LIQ_BUFFER_PCT"] == "0.30"


def test_runtime_settings_from_env() -> None:
    s = RuntimeSettings.from_env({"SHARDS": "4", "KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    assert s.shards == 4 and s.kafka_bootstrap == "127.0.0.1:1"
    with pytest.raises(ConfigError, match=r"^SHARDS"):
        RuntimeSettings.from_env({"SHARDS": "0"})


def test_cutoffs() -> None:
    cuts = [parse_cutoff("00:30"), parse_cutoff("15:30")]
    assert next_cutoff(datetime(2025, 6, 10, 15, 30, tzinfo=UTC), cuts) == datetime(2025, 6, 11, 0, 30, tzinfo=UTC)
    assert next_cutoff(datetime(2025, 6, 10, 0, 0, tzinfo=UTC), cuts) == datetime(2025, 6, 10, 0, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="HH:MM"):
        parse_cutoff("7:30")
    with pytest.raises(ValueError, match="time of day"):
        parse_cutoff("24:00")
    with pytest.raises(ValueError, match="no sweep cut-offs"):
        next_cutoff(datetime(2025, 1, 1, tzinfo=UTC), [])


def test_cutoffs_fall_on_business_days() -> None:
    cuts = [parse_cutoff("00:30"), parse_cutoff("15:30")]
    saturday = datetime(2026, 12, 26, 10, 0, tzinfo=UTC)
    assert next_cutoff(saturday, cuts, FED) == datetime(2026, 12, 28, 0, 30, tzinfo=UTC)
    assert next_cutoff(saturday, cuts, WEEKDAYS) == datetime(2026, 12, 28, 0, 30, tzinfo=UTC)
    christmas = datetime(2026, 12, 25, 10, 0, tzinfo=UTC)  # a Friday: the Fed is closed
    assert next_cutoff(christmas, cuts, FED) == datetime(2026, 12, 28, 0, 30, tzinfo=UTC)
    assert next_cutoff(christmas, cuts, WEEKDAYS) == datetime(2026, 12, 25, 15, 30, tzinfo=UTC)
    assert skipped_days(christmas, cuts, FED) == [
        (date(2026, 12, 25), "Christmas Day"), (date(2026, 12, 26), "Saturday"), (date(2026, 12, 27), "Sunday")]
    assert skipped_days(christmas, cuts, WEEKDAYS) == []
    eve_late = datetime(2025, 11, 26, 16, 0, tzinfo=UTC)  # the day before Thanksgiving, after its last cut-off
    assert next_cutoff(eve_late, cuts, FED) == datetime(2025, 11, 28, 0, 30, tzinfo=UTC)
    assert skipped_days(eve_late, cuts, FED) == [(date(2025, 11, 27), "Thanksgiving Day")]
    assert next_cutoff(eve_late, cuts, WEEKDAYS) == datetime(2025, 11, 27, 0, 30, tzinfo=UTC)
    eve_early = datetime(2025, 11, 26, 10, 0, tzinfo=UTC)  # before its last cut-off: that one counts
    assert next_cutoff(eve_early, cuts, FED) == datetime(2025, 11, 26, 15, 30, tzinfo=UTC)
    assert skipped_days(eve_early, cuts, FED) == []
    # Thanksgiving after its own last cut-off: the Friday's first cut-off, the holiday had none left to skip
    assert skipped_days(datetime(2025, 11, 27, 16, 0, tzinfo=UTC), cuts, FED) == []
    # the Fed's holiday on a Saturday is not observed: Friday July 3 2026 keeps its cut-offs
    assert next_cutoff(datetime(2026, 7, 3, 1, 0, tzinfo=UTC), cuts, FED) == datetime(2026, 7, 3, 15, 30, tzinfo=UTC)
    # a Friday evening: Monday's first cut-off, unless Monday is a holiday (MLK Day 2026)
    assert next_cutoff(datetime(2026, 1, 16, 20, 0, tzinfo=UTC), cuts, FED) == datetime(2026, 1, 20, 0, 30, tzinfo=UTC)


def test_next_cutoff_uses_the_active_calendar_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    cuts = [parse_cutoff("00:30"), parse_cutoff("15:30")]
    christmas = datetime(2026, 12, 25, 10, 0, tzinfo=UTC)
    monkeypatch.delenv("BUSINESS_CALENDAR", raising=False)
    assert next_cutoff(christmas, cuts) == datetime(2026, 12, 28, 0, 30, tzinfo=UTC)
    monkeypatch.setenv("BUSINESS_CALENDAR", "weekdays")
    assert next_cutoff(christmas, cuts) == datetime(2026, 12, 25, 15, 30, tzinfo=UTC)


# Years 1900-2200: the property walks days, and the last days of year 9999 have no day after them.
@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)),
       st.lists(st.times(), min_size=1, max_size=4), st.sampled_from([FED, WEEKDAYS]))
def test_next_cutoff_is_the_first_on_a_business_day(
    now: datetime, times: list[time], calendar: BusinessCalendar
) -> None:
    cut = next_cutoff(now, [t.replace(tzinfo=UTC) for t in times], calendar)
    assert now < cut and cut.time() in times and calendar.is_business_day(cut.date())
    # no cut-off of a business day lies between: the ones passed over are on closed days
    day = now.date()
    while day <= cut.date():
        for t in times:
            if now < datetime.combine(day, t, tzinfo=UTC) < cut:
                assert not calendar.is_business_day(day)
        day += timedelta(days=1)
    # within the next 24 h when today and tomorrow are business days; at most a long weekend later
    if calendar.is_business_day(now.date()) and calendar.is_business_day(now.date() + timedelta(days=1)):
        assert cut <= now + timedelta(days=1)
    assert cut <= now + timedelta(days=5)


def test_timestamps_are_utc_with_z() -> None:
    plus2 = datetime(2025, 6, 10, 21, 42, 11, 818000, tzinfo=timezone(timedelta(hours=2)))
    assert iso_z(plus2) == "2025-06-10T19:42:11.818Z"
    with pytest.raises(ValueError, match="timezone"):
        as_utc(datetime(2025, 1, 1))


def test_money_helpers() -> None:
    assert to_decimal("1_000.50") == Decimal("1000.50")
    assert quantize_down(Decimal("1.99999")) == Decimal("1.9999")
    assert quantize_down(Decimal("-1.99999")) == Decimal("-1.9999")
    assert fmt(Decimal("5")) == "5.0000"
    for bad in ("NaN", "inf", "x", True):
        with pytest.raises(ValueError):
            to_decimal(bad)
