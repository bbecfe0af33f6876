"""``treasury-orch ingest`` on real bank files (issue 19): enveloped messages, camt.054, refusals.

Dry runs only: nothing here reaches Kafka or Postgres (a file without balances sends nothing and
never connects either).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serve_app.cli import main
from tests.unit.test_camt_versions import Bal, app_header, document, enveloped, xml


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_enveloped_statement_and_camt054(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    statement = tmp_path / "statement.xml"
    statement.write_bytes(xml(enveloped("053", "13", document("053", "13", [Bal(dt="<Dt>2024-03-01+02:00</Dt>")]))))
    notification = tmp_path / "notification.xml"
    notification.write_bytes(xml(document("054", "13", [], entries=4)))
    code, out, err = run(capsys, "ingest", "--dry-run", str(statement), str(notification))
    lines = [json.loads(text) for text in out.splitlines()]
    # each file's entries come first (they are sent first): the statement's one, its balance, the 4 notified
    assert [line.get("record", "balance") for line in lines] == ["entry", "balance"] + ["entry"] * 4
    line = lines[1]
    assert code == 0
    assert line == {**line, "balance_code": "ITAV", "amount": "100.00", "as_of_ts": "2024-03-01T21:59:59.999Z"}
    assert err == ""  # a camt.054 of entries has something to send now


def test_a_file_without_balances_sends_nothing_and_connects_to_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    notification = tmp_path / "n.xml"
    notification.write_bytes(xml(document("054", "02", [], entries=0)))  # with entries it would send them
    code, out, err = run(capsys, "ingest", str(notification))
    assert code == 0 and json.loads(out) == {"sent": 0, "undelivered": 0, "entries": 0, "balances": 0}
    assert "nothing to send" in err


def test_a_contradicting_header_refuses_the_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_bytes(xml(f"<Envelope>{app_header('053', '09', definition='camt.053.001.08')}"
                        f"{document('053', '09', [Bal()])}</Envelope>"))
    code, out, err = run(capsys, "ingest", "--dry-run", str(bad))
    assert code == 2 and out == ""
    assert "bad.xml: refused: Envelope/AppHdr/MsgDefIdr: names 'camt.053.001.08'" in err
