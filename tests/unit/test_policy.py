"""The decision policy: worked examples and hypothesis properties (DESIGN.md section 6)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.policy import BREACH_BPS_CAP, DecisionInputs, Reason, decide, observed_var_bps
from schemas.sweep_order import Product
from treasury import business_calendar
from treasury.settings import PolicyConfig

NOW = datetime(2025, 6, 10, 19, 42, 11, tzinfo=UTC)
CONFIG = PolicyConfig()

money = st.decimals(min_value=Decimal("-1e9"), max_value=Decimal("1e10"), places=4, allow_nan=False)
positive = st.decimals(min_value=Decimal("0"), max_value=Decimal("1e10"), places=4, allow_nan=False)
bps = st.one_of(st.none(), st.floats(min_value=0, max_value=500, allow_nan=False))
instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
)


def inputs(**overrides: object) -> DecisionInputs:
    base: dict[str, object] = {
        "available_usd": Decimal("10000000"),
        "eod_projection_usd": Decimal("2000000"),
        "var_bps": 5.0,
        "now": NOW,
        "min_balance_usd": Decimal("1000000"),
    }
    base.update(overrides)
    return DecisionInputs(**base)  # type: ignore[arg-type]


def test_within_limit_keeps_the_buffer_and_buys_tbills() -> None:
    d = decide(inputs(), CONFIG)
    # excess = 10,000,000 - 0 - 1,000,000 = 9,000,000; buffer = 0.30 x 2,000,000 = 600,000
    assert d.order and d.product is Product.TBILL_4W
    assert d.amount_usd == Decimal("8400000.0000")
    assert d.reason is Reason.WITHIN_LIMIT and d.ladder_days == 28
    assert d.cutoff_utc == datetime(2025, 6, 11, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize(("now", "fed", "weekdays"), [
    # a Saturday: Monday's first cut-off either way
    (datetime(2026, 12, 26, 10, tzinfo=UTC), datetime(2026, 12, 28, 0, 30, tzinfo=UTC),
     datetime(2026, 12, 28, 0, 30, tzinfo=UTC)),
    # Christmas Day (a Friday): the Fed is closed, so Monday's; Monday to Friday, the same day's
    (datetime(2026, 12, 25, 10, tzinfo=UTC), datetime(2026, 12, 28, 0, 30, tzinfo=UTC),
     datetime(2026, 12, 25, 15, 30, tzinfo=UTC)),
    # Christmas Eve after its last cut-off: not the holiday's 00:30 but Monday's
    (datetime(2026, 12, 24, 16, tzinfo=UTC), datetime(2026, 12, 28, 0, 30, tzinfo=UTC),
     datetime(2026, 12, 25, 0, 30, tzinfo=UTC)),
    # Memorial Day 2025 (Monday May 26), decided the Friday evening before
    (datetime(2025, 5, 23, 20, tzinfo=UTC), datetime(2025, 5, 27, 0, 30, tzinfo=UTC),
     datetime(2025, 5, 26, 0, 30, tzinfo=UTC)),
])
def test_the_cutoff_is_on_a_business_day_of_the_active_calendar(
    monkeypatch: pytest.MonkeyPatch, now: datetime, fed: datetime, weekdays: datetime
) -> None:
    monkeypatch.setenv("BUSINESS_CALENDAR", "fed")
    d = decide(inputs(now=now), CONFIG)
    assert d.order and d.cutoff_utc == fed
    assert d.as_record()["cutoff_utc"] == fed.strftime("%Y-%m-%dT%H:%M:%S.000Z")  # the decision record shows it
    monkeypatch.setenv("BUSINESS_CALENDAR", "weekdays")
    assert decide(inputs(now=now), CONFIG).cutoff_utc == weekdays


def test_esg_account_buys_carbon_notes() -> None:
    d = decide(inputs(esg=True), CONFIG)
    assert d.product is Product.CARBON_NOTE and d.amount_usd == Decimal("8400000.0000") and d.ladder_days is None


def test_breach_sweeps_the_whole_excess_overnight() -> None:
    d = decide(inputs(var_bps=10.5), CONFIG)
    assert d.product is Product.FED_RRP and d.amount_usd == Decimal("9000000.0000") and d.reason is Reason.VAR_BREACH


def test_var_exactly_at_the_limit_is_not_a_breach() -> None:
    assert decide(inputs(var_bps=10.0), CONFIG).product is Product.TBILL_4W


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [({"var_bps": None}, Reason.VAR_UNKNOWN), ({"eod_projection_usd": None}, Reason.NO_PROJECTION)],
)
def test_unknown_risk_falls_back_to_overnight(overrides: dict[str, object], reason: Reason) -> None:
    d = decide(inputs(**overrides), CONFIG)
    assert d.product is Product.FED_RRP and d.reason is reason and d.amount_usd == Decimal("9000000.0000")


def test_pending_sweeps_are_not_swept_twice() -> None:
    d = decide(inputs(pending_sweeps_usd=Decimal("8400000")), CONFIG)
    assert not d.order and d.reason is Reason.NO_EXCESS and d.amount_usd == 0


def test_below_min_sweep_emits_nothing() -> None:
    d = decide(inputs(available_usd=Decimal("1699999.99")), CONFIG)
    # excess 699,999.99 - buffer 600,000 = 99,999.99 < 100,000
    assert not d.order and d.reason is Reason.BELOW_MIN_SWEEP and d.product is None
    assert "99999.9900" in d.explanation


def test_amounts_are_rounded_down_to_four_places() -> None:
    d = decide(inputs(available_usd=Decimal("10000000.123456"), eod_projection_usd=Decimal("0")), CONFIG)
    assert d.amount_usd == Decimal("9000000.1234")


def test_record_is_json_safe_and_explains_inputs() -> None:
    record = decide(inputs(), CONFIG).as_record()
    assert record["amount_usd"] == "8400000.0000" and record["inputs"]["available_usd"] == "10000000.0000"
    assert record["inputs"]["now"] == "2025-06-10T19:42:11.000Z" and record["reason"] == "within_limit"


def test_observed_var_bps() -> None:
    assert observed_var_bps(None, Decimal(1)) is None
    assert observed_var_bps(800.0, Decimal("1000000")) == pytest.approx(8.0)
    assert observed_var_bps(1.0, Decimal("0")) == BREACH_BPS_CAP
    assert observed_var_bps(1.0, Decimal("-5")) == BREACH_BPS_CAP


@given(available=money, pending=positive, minimum=positive, projection=st.one_of(st.none(), positive),
       var=bps, esg=st.booleans(), now=instants)
def test_properties(available: Decimal, pending: Decimal, minimum: Decimal, projection: Decimal | None,
                    var: float | None, esg: bool, now: datetime) -> None:
    i = DecisionInputs(available, projection, var, now, pending, minimum, esg)
    d = decide(i, CONFIG)
    excess = available - pending - minimum
    # never sweeps more than the excess, never a negative or sub-minimum order
    assert d.amount_usd <= max(excess, Decimal(0))
    assert d.amount_usd >= 0
    assert d.amount_usd == d.amount_usd.quantize(Decimal("0.0001"))
    if d.order:
        assert d.amount_usd >= CONFIG.MIN_SWEEP_USD and d.product is not None
    # a breach (or unknown risk) only ever goes overnight
    if var is None or var > float(CONFIG.VAR_LIMIT_BPS) or projection is None:
        assert d.product in (None, Product.FED_RRP)
    # the cut-off is always in the future, on a business day (of the active calendar): within a day,
    # or after a weekend or a holiday (a long weekend at most)
    assert now < d.cutoff_utc <= now + timedelta(days=5)
    assert business_calendar.active().is_business_day(d.cutoff_utc.date())
