"""Four-eyes approval, the pure parts: which orders wait, what counts as pending, the settings, the
audit trail's shape, the metric, and the lock the migration's trigger takes (docs/approval.md)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.account_state import pending_sweeps
from schemas.errors import MessageRejected, decode
from serve_app.rest.routes.approvals import VerdictBody
from serve_app.rest.routes.orders import status_history
from storage.approvals import Approval, Trail, Verdict
from storage.orders import RELEASE_LOCK_KEY, OpenOrder
from treasury.metrics import render
from treasury.order_status import NO_APPROVAL, UNSETTLED, ApprovalRule, OrderStatus, initial_status
from treasury.settings import ConfigError, RuntimeSettings

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
THRESHOLD = Decimal("25000000")


def test_the_threshold_itself_waits_and_zero_turns_approval_off() -> None:
    assert initial_status(THRESHOLD, THRESHOLD) is OrderStatus.AWAITING_APPROVAL
    assert initial_status(THRESHOLD - Decimal("0.0001"), THRESHOLD) is OrderStatus.NEW
    assert initial_status(THRESHOLD + 1, THRESHOLD) is OrderStatus.AWAITING_APPROVAL
    assert initial_status(Decimal("999999999999"), Decimal(0)) is OrderStatus.NEW
    assert NO_APPROVAL.status_for(Decimal("999999999999")) is OrderStatus.NEW


@given(amount=st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("1e12"), places=4),
       threshold=st.decimals(min_value=Decimal(0), max_value=Decimal("1e12"), places=4),
       required=st.integers(min_value=1, max_value=10))
def test_an_order_waits_exactly_when_it_reaches_a_threshold_that_is_on(amount: Decimal, threshold: Decimal,
                                                                         required: int) -> None:
    rule = ApprovalRule(threshold, required)
    waits = threshold > 0 and amount >= threshold
    assert (rule.status_for(amount) is OrderStatus.AWAITING_APPROVAL) == waits
    assert rule.required_for(amount) == (required if waits else None)


def test_an_order_awaiting_approval_is_pending_like_a_new_one() -> None:
    assert OrderStatus.AWAITING_APPROVAL in UNSETTLED
    assert OrderStatus.REJECTED not in UNSETTLED and OrderStatus.EXPIRED not in UNSETTLED
    waiting = [OpenOrder("A1", Decimal("30000000"), OrderStatus.AWAITING_APPROVAL),
               OpenOrder("A1", Decimal("1000000"), OrderStatus.NEW)]
    assert pending_sweeps(waiting, T0) == Decimal("31000000")
    ended = [OpenOrder("A1", Decimal("30000000"), OrderStatus.REJECTED),
             OpenOrder("A1", Decimal("30000000"), OrderStatus.EXPIRED)]
    assert pending_sweeps(ended, T0) == 0


def test_the_settings_read_and_check_the_approval_keys() -> None:
    default = RuntimeSettings.from_env({})
    assert default.approval_rule() == ApprovalRule(Decimal("25000000"), 2)
    off = RuntimeSettings.from_env({"APPROVAL_THRESHOLD_USD": "0", "APPROVALS_REQUIRED": "3"})
    assert off.approval_rule() == ApprovalRule(Decimal(0), 3)
    assert RuntimeSettings.from_env(off.as_env()).approval_rule() == off.approval_rule()  # passed to every process
    with pytest.raises(ConfigError, match="APPROVAL_THRESHOLD_USD"):
        RuntimeSettings.from_env({"APPROVAL_THRESHOLD_USD": "-1"})
    with pytest.raises(ConfigError, match="APPROVALS_REQUIRED"):
        RuntimeSettings.from_env({"APPROVALS_REQUIRED": "0"})


def row(**kw: Any) -> dict[str, Any]:
    base = {"created_ts": T0, "released_ts": None, "rejected_ts": None, "expired_ts": None, "sent_ts": None,
            "acked_ts": None, "failed_ts": None, "settled_ts": None, "approvals_required": None}
    return {**base, **kw}


def test_the_status_history_shows_the_wait_and_how_it_ended() -> None:
    assert status_history(row()) == {"NEW": "2026-11-30T10:00:00.000Z"}
    released = row(approvals_required=2, released_ts=T0 + timedelta(hours=1), sent_ts=T0 + timedelta(hours=1))
    assert list(status_history(released)) == ["AWAITING_APPROVAL", "NEW", "SENT"]
    expired = row(approvals_required=2, expired_ts=T0 + timedelta(hours=5))
    assert status_history(expired) == {"AWAITING_APPROVAL": "2026-11-30T10:00:00.000Z",
                                       "EXPIRED": "2026-11-30T15:00:00.000Z"}


def test_a_trail_lists_approvals_and_the_rejection() -> None:
    trail = Trail((Approval("alice", Verdict.APPROVE, "ok", T0),), Approval("bob", Verdict.REJECT, None, T0))
    assert trail.view() == {"approvals": [{"subject": "alice", "ts": "2026-11-30T10:00:00.000Z", "comment": "ok"}],
                            "rejection": {"subject": "bob", "ts": "2026-11-30T10:00:00.000Z", "comment": None}}


def test_a_comment_is_bounded() -> None:
    assert decode(VerdictBody, b'{"comment": "fine"}').comment == "fine"
    assert decode(VerdictBody, b"{}").comment is None
    with pytest.raises(MessageRejected) as refused:
        decode(VerdictBody, ('{"comment": "' + "x" * 1001 + '"}').encode())
    assert refused.value.field == "comment"


def test_the_awaiting_gauge_counts_orders_awaiting_approval() -> None:
    text = render([], {"AWAITING_APPROVAL": 3, "NEW": 1}).decode()
    assert re.search(r"^treasury_orders_awaiting_approval 3\.0$", text, re.M)
    assert re.search(r'^treasury_orders\{status="EXPIRED"\} 0\.0$', text, re.M)


def test_the_trigger_assigns_release_sequences_under_the_named_lock() -> None:
    sql = (REPO / "storage" / "migrations" / "006_approval.sql").read_text()
    assert f"pg_advisory_xact_lock({RELEASE_LOCK_KEY})" in sql
    assert "NEW.release_seq := nextval('sweep_order_release_seq')" in sql
