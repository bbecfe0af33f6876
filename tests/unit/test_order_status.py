"""The statuses the ledger's SQL names stay those of ``OrderStatus`` (SQL text cannot import the enum)."""

from __future__ import annotations

import re
from pathlib import Path

from treasury.order_status import INITIAL, TRANSITIONS, UNSETTLED, OrderStatus

REPO = Path(__file__).resolve().parents[2]
QUOTED_STATUS = re.compile(r"'([A-Z_]+)'")


def test_the_table_allows_exactly_the_enums_statuses() -> None:
    """The CHECK of the newest migration that states one (004 widened 001's) is the one in force."""
    checks = [found for path in sorted((REPO / "storage" / "migrations").glob("*.sql"))
              for found in re.findall(r"CHECK \(status IN \(([^)]*'NEW'[^)]*)\)\)", path.read_text())]
    allowed = checks[-1]
    assert set(QUOTED_STATUS.findall(allowed)) == {s.value for s in OrderStatus}


def test_every_status_the_queries_name_is_one_of_the_enum() -> None:
    """Every quoted upper-case word of storage/orders.py is a status (products are parameters there),
    and so is every status a partial index of the ledger's migration names."""
    named = set(QUOTED_STATUS.findall((REPO / "storage" / "orders.py").read_text()))
    assert named and named <= {s.value for s in OrderStatus}
    ddl = (REPO / "storage" / "migrations" / "001_ledger.sql").read_text()
    in_indexes = {w for where in re.findall(r"WHERE status[^;]*;", ddl) for w in QUOTED_STATUS.findall(where)}
    assert in_indexes and in_indexes <= {s.value for s in OrderStatus}


def test_the_open_orders_query_names_the_executing_statuses() -> None:
    source = (REPO / "storage" / "orders.py").read_text()
    summed = re.search(r"status IN \(([^)]*)\)\s*GROUP BY", source)
    assert summed is not None and set(QUOTED_STATUS.findall(summed.group(1))) == {s.value for s in UNSETTLED}


def test_transitions_go_forward_only() -> None:
    """Every status is written (INITIAL) or reached; the only way into NEW after writing is a release."""
    assert all(src != dst for src, dst in TRANSITIONS)
    assert {dst for _, dst in TRANSITIONS} | INITIAL == set(OrderStatus)
    assert OrderStatus.AWAITING_APPROVAL not in {dst for _, dst in TRANSITIONS}
    assert {src for src, dst in TRANSITIONS if dst == OrderStatus.NEW} == {OrderStatus.AWAITING_APPROVAL}
