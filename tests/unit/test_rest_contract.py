"""The OpenAPI document as the contract (issue 15): what it states, read without a running stack.

The integration suite runs schemathesis with every check against the live app; these are the
statements that run checks, and that a reader of the document relies on, spelled out.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any, cast

import pytest

from serve_app.rest.api import Backend, build_app, encode_cursor
from serve_app.rest.routes.orders import CURSOR_PATTERN

REST = Path(__file__).resolve().parents[2] / "serve_app" / "rest"
MAX_FUNCTION_LINES = 80


class NoBackend:
    """Building the app and its document touches nothing of the backend's."""

    verifier = None


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_app(cast(Backend, NoBackend())).openapi()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in document["paths"].items() for method, op in item.items()]


def test_every_error_answer_documents_the_error_body(document: dict[str, Any]) -> None:
    for path, method, op in operations(document):
        for status, answer in op["responses"].items():
            if int(status) < 400 or (path, status) == ("/readyz", "503"):
                continue
            schema = answer["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
    error = document["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["error"] and document["components"]["schemas"]["ErrorDetail"]["required"] == [
        "field", "reason"]


def test_protected_operations_document_401_and_403_and_what_they_refuse(document: dict[str, Any]) -> None:
    statuses = {f"{method.upper()} {path}": sorted(op["responses"]) for path, method, op in operations(document)}
    assert statuses == {
        "GET /healthz": ["200"],
        "GET /readyz": ["200", "503"],
        "GET /metrics": ["200", "503"],
        "GET /sweep-intent": ["200", "401", "403", "422", "503"],
        "POST /sweep-intent/{order_id}/ack": ["200", "401", "403", "404", "409", "422", "503"],
        "POST /sweep-intent/{order_id}/fail": ["200", "401", "403", "404", "409", "422", "503"],
        "GET /approvals": ["200", "401", "403", "422", "503"],
        "POST /sweep-intent/{order_id}/approve": ["200", "401", "403", "404", "409", "422", "503"],
        "POST /sweep-intent/{order_id}/reject": ["200", "401", "403", "404", "409", "422", "503"],
        "POST /balances": ["202", "401", "403", "409", "413", "422", "503"],
        "GET /accounts/{account_id}/position": ["200", "401", "403", "404", "503"],
        "GET /sweep-intent/{order_id}": ["200", "401", "403", "404", "422", "503"],
        "GET /accounts/{account_id}/investments": ["200", "401", "403", "404", "422", "503"],
        "GET /investments": ["200", "401", "403", "422", "503"],
        "GET /settlement/overdue": ["200", "401", "403", "422", "503"],
        "GET /settlement/breaks": ["200", "401", "403", "422", "503"],
        "GET /accounts/{account_id}/balances/{event_id}": ["200", "401", "403", "404", "422", "500", "503"],
        "POST /risk/var/recompute": ["202", "401", "403", "409", "422", "503"],
        "GET /risk/var/recompute/{job_id}": ["200", "401", "403", "404", "503"],
        "POST /risk/replay": ["202", "401", "403", "409", "422", "503"],
        "GET /risk/replay/{job_id}": ["200", "401", "403", "404", "503"],
        # the console's reads (serve_app/rest/routes/console.py, docs/console.md)
        "GET /accounts": ["200", "401", "403", "503"],
        "GET /orders": ["200", "401", "403", "422", "503"],
        "GET /config": ["200", "401", "403"],
        "GET /accounts/{account_id}/var/backtest": ["200", "401", "403", "404", "422", "503"],
        "POST /accounts/{account_id}/what-if": ["200", "401", "403", "404", "422", "503"],
        "GET /metrics/series": ["200", "401", "403", "422", "503"],
    }
    for path, method, op in operations(document):
        if "401" in op["responses"]:
            assert op["security"] == [{"HTTPBearer": []}], (method, path)
            assert "WWW-Authenticate" in op["responses"]["401"]["headers"]


def test_the_cursor_and_the_balance_rule_are_stated(document: dict[str, Any]) -> None:
    [after] = [p for p in document["paths"]["/sweep-intent"]["get"]["parameters"] if p["name"] == "after"]
    assert after["schema"]["pattern"] == CURSOR_PATTERN
    assert all(re.fullmatch(CURSOR_PATTERN, encode_cursor(n)) for n in (0, 7, 10**9, 10**18, 9 * 10**18 - 1))
    assert not any(re.fullmatch(CURSOR_PATTERN, c) for c in ("garbage", "c1.!!!", "c1.LTE", encode_cursor(2**64)))
    body = document["paths"]["/balances"]["post"]["requestBody"]["content"]
    rule = body["application/json"]["schema"]["anyOf"]
    assert [r["required"] for r in rule] == [["available_usd"], ["booked_usd"]]
    assert body["application/json"]["schema"]["properties"]["currency"]["const"] == "USD"
    assert body["application/xml"]["schema"]["format"] == "binary"


def test_no_function_in_the_rest_package_is_longer_than_80_lines() -> None:
    long = []
    for path in REST.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REST)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long
