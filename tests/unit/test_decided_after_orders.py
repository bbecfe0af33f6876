"""Which balance rows wait for the batch's orders before they count as decided (pure)."""

from __future__ import annotations

from types import SimpleNamespace

from actors.batch_plan import decided_after_orders


def pending(account: str, event: str, order: bool) -> SimpleNamespace:
    return SimpleNamespace(event=SimpleNamespace(account_id=account, event_id=event), order=object() if order else None)


def test_every_event_of_an_account_with_an_order_waits_for_the_orders() -> None:
    work = [pending("A", "a1", True), pending("A", "a2", False), pending("B", "b1", False), pending("B", "b2", False)]
    # a2 has no order, but marking it decided first would make a1 (older, with the order) stale on replay
    assert decided_after_orders(work) == {("A", "a1"), ("A", "a2")}  # type: ignore[arg-type]


def test_a_batch_without_orders_is_decided_at_once() -> None:
    assert decided_after_orders([pending("A", "a1", False)]) == set()  # type: ignore[list-item]
