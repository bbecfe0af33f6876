"""Daily net cash flows from closing balances, worked by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from schemas.balance_event import BalanceCode, BalanceEvent, BalanceKind
from schemas.camt import parse_camt
from schemas.statements import closing_balances, daily_net_flows, prior_day_close

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "iso20022" / "genkgo-camt"
_ids = count()


def ev(
    account: str,
    day: date,
    amount: str,
    code: BalanceCode = BalanceCode.CLBD,
    currency: str = "USD",
    **kw: Any,
) -> BalanceEvent:
    field = "available_usd" if code in (BalanceCode.CLAV, BalanceCode.ITAV) else "booked_usd"
    return BalanceEvent(
        event_id=f"e{next(_ids)}",
        account_id=account,
        as_of_ts=kw.pop("as_of", datetime(day.year, day.month, day.day, 23, 59, 59, 999999, tzinfo=UTC)),
        kind=BalanceKind.PRIOR_DAY,
        balance_code=code,
        currency=currency,
        **{field: Decimal(amount)},
        **kw,
    )


MON, TUE, WED, THU, FRI = (date(2024, 3, d) for d in (4, 5, 6, 7, 8))


def test_daily_net_flows_by_hand() -> None:
    events = [
        # account A: 1,000.00 -> 1,250.50 (+250.50) -> gap on Wed -> 980.25 on Thu (-270.25)
        ev("A", THU, "980.25"),
        ev("A", MON, "1000.00"),
        ev("A", TUE, "1250.50"),
        ev("A", TUE, "1300.00", BalanceCode.CLAV),  # not a close: ignored
        ev("A", WED, "7.00", BalanceCode.OPBD),  # not a close: ignored
        # account B: -50.00 (overdraft) -> 25.125 (+75.125) -> 25.125 (0)
        ev("B", MON, "-50.00"),
        ev("B", TUE, "25.125"),
        ev("B", WED, "25.125"),
        # account C: a single close, so no flow yet
        ev("C", FRI, "10"),
    ]
    assert daily_net_flows(events) == {
        "A": [(TUE, Decimal("250.50")), (THU, Decimal("-270.25"))],
        "B": [(TUE, Decimal("75.125")), (WED, Decimal("0"))],
        "C": [],
    }


def test_gap_is_attributed_to_the_later_day() -> None:
    flows = daily_net_flows([ev("A", MON, "100"), ev("A", FRI, "160")])
    assert flows == {"A": [(FRI, Decimal("60"))]}


def test_the_same_close_twice_counts_once() -> None:
    events = [ev("A", MON, "100.00"), ev("A", MON, "100.0"), ev("A", TUE, "90")]
    assert daily_net_flows(events) == {"A": [(TUE, Decimal("-10.00"))]}


def test_contradicting_closes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"account A: two different closing balances for 2024-03-04"):
        daily_net_flows([ev("A", MON, "100"), ev("A", MON, "101")])


def test_currency_change_is_refused() -> None:
    with pytest.raises(ValueError, match="currency changes from USD to EUR on 2024-03-05"):
        daily_net_flows([ev("A", MON, "100"), ev("A", TUE, "100", currency="EUR")])


def test_day_is_the_utc_date_of_the_close() -> None:
    late = ev("A", TUE, "130", as_of=datetime(2024, 3, 5, 23, 30, tzinfo=UTC))
    assert daily_net_flows([ev("A", MON, "100"), late]) == {"A": [(TUE, Decimal("30"))]}


def test_empty_input() -> None:
    assert daily_net_flows([]) == {}
    assert prior_day_close([]) == {}


def test_prior_day_close_is_the_latest_close() -> None:
    events = [
        ev("A", TUE, "200"),
        ev("A", MON, "100"),
        ev("A", WED, "1", BalanceCode.OPBD),
        ev("B", MON, "5"),
    ]
    closes = prior_day_close(events)
    assert {k: (v.as_of_ts.date(), v.booked_usd) for k, v in closes.items()} == {
        "A": (TUE, Decimal("200")),
        "B": (MON, Decimal("5")),
    }
    assert set(closing_balances(events)["A"]) == {MON, TUE}


def _statement(msg_id: str, day: date, amount: str, indicator: str = "CRDT") -> bytes:
    return (
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>'
        f"<GrpHdr><MsgId>{msg_id}</MsgId></GrpHdr><Stmt><Id>{msg_id}-1</Id>"
        "<Acct><Id><IBAN>DE89370400440532013000</IBAN></Id></Acct>"
        "<Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy='EUR'>1.00</Amt>"
        f"<CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>{day.isoformat()}</Dt></Dt></Bal>"
        f"<Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy='EUR'>{amount}</Amt>"
        f"<CdtDbtInd>{indicator}</CdtDbtInd><Dt><Dt>{day.isoformat()}</Dt></Dt></Bal>"
        "</Stmt></BkToCstmrStmt></Document>"
    ).encode()


def test_series_of_camt053_statements() -> None:
    # Closes: Mon 5,000.00 CR; Tue 1,250.75 DR (-1,250.75); Thu 300.00 CR (Wed missing).
    events = [
        *parse_camt(_statement("M-THU", THU, "300.00")),
        *parse_camt(_statement("M-MON", MON, "5000.00")),
        *parse_camt(_statement("M-TUE", TUE, "1250.75", "DBIT")),
    ]
    assert daily_net_flows(events) == {
        "DE89370400440532013000": [(TUE, Decimal("-6250.75")), (THU, Decimal("1550.75"))]
    }


@pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"genkgo camt sample files not found at {SAMPLES}")
def test_sample_multi_statement_file_contradicts_itself() -> None:
    # Both statements in the file close 2014-12-31 for the same IBAN: 27.00 and 20.00.
    events = parse_camt((SAMPLES / "camt053.v2.multi.statement.xml").read_bytes())
    with pytest.raises(ValueError, match="two different closing balances for 2014-12-31"):
        daily_net_flows(events)


def test_closes_dated_with_an_offset_fall_on_the_day_their_zone_ends() -> None:
    """Issue 19: ``Dt`` may carry an offset; east of UTC a close keeps its date, west of it the next UTC day."""
    east = parse_camt(_statement("M-E", MON, "10.00").replace(f"{MON.isoformat()}<".encode(),
                                                                f"{MON.isoformat()}+02:00<".encode()))
    west = parse_camt(_statement("M-W", TUE, "25.00").replace(f"{TUE.isoformat()}<".encode(),
                                                                f"{TUE.isoformat()}-05:00<".encode()))
    flows = daily_net_flows([*east, *west])
    assert flows == {"DE89370400440532013000": [(TUE + timedelta(days=1), Decimal("15.00"))]}
