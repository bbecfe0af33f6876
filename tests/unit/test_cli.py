"""The CLI's pure commands, run in-process: what a treasurer or quant types and reads."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from serve_app.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_decide_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "decide", "--available", "10000000", "--projection", "2000000", "--var-bps", "8",
                       "--min-balance", "1000000", "--now", "2025-06-10T19:42:11Z")
    result = json.loads(out)
    assert code == 0
    assert result == {**result, "order": True, "product": "TBILL_4W", "amount_usd": "8400000.0000",
                      "cutoff_utc": "2025-06-11T00:30:00.000Z", "reason": "within_limit"}


def test_decide_breach_esg_and_pending(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "decide", "--available", "5000000", "--projection", "0", "--var-bps", "12",
                    "--pending", "1000000", "--esg", "--now", "2025-06-10T10:00:00+00:00")
    assert json.loads(out)["product"] == "FED_RRP" and json.loads(out)["amount_usd"] == "4000000.0000"
    assert json.loads(out)["cutoff_utc"] == "2025-06-10T15:30:00.000Z"
    _, out, _ = run(capsys, "decide", "--available", "100", "--projection", "0", "--var-bps", "1")
    assert json.loads(out)["order"] is False and json.loads(out)["product"] is None


def test_decide_shows_the_business_calendar_and_the_days_the_cutoff_moved_past(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["decide", "--available", "10000000", "--projection", "2000000", "--var-bps", "8",
            "--now", "2026-12-24T16:00:00Z"]  # Christmas Eve, after its last cut-off
    monkeypatch.delenv("BUSINESS_CALENDAR", raising=False)
    result = json.loads(run(capsys, *args)[1])
    assert result["business_calendar"] == "fed" and result["cutoff_utc"] == "2026-12-28T00:30:00.000Z"
    assert result["cutoff_skipped"] == ["2026-12-25 Christmas Day", "2026-12-26 Saturday", "2026-12-27 Sunday"]
    monkeypatch.setenv("BUSINESS_CALENDAR", "weekdays")
    result = json.loads(run(capsys, *args)[1])
    assert result["business_calendar"] == "weekdays" and result["cutoff_utc"] == "2026-12-25T00:30:00.000Z"
    assert result["cutoff_skipped"] == []
    monkeypatch.setenv("BUSINESS_CALENDAR", "nyse")
    code, _, err = run(capsys, *args)
    assert code == 2 and "BUSINESS_CALENDAR" in err and "fed, weekdays" in err


def test_decide_uses_the_active_configuration(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIQ_BUFFER_PCT", "0.5")
    _, out, _ = run(capsys, "decide", "--available", "10000000", "--projection", "2000000", "--var-bps", "1")
    assert json.loads(out)["amount_usd"] == "9000000.0000"
    monkeypatch.setenv("VAR_LIMIT_BPS", "-1")
    code, _, err = run(capsys, "decide", "--available", "1", "--projection", "1", "--var-bps", "1")
    assert code == 2 and "VAR_LIMIT_BPS" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--available", "abc", "--projection", "1", "--var-bps", "1"], "not a decimal amount"),
        (["--available", "1", "--projection", "1", "--var-bps", "-3"], "must be finite and not negative"),
        (["--available", "1", "--projection", "1", "--var-bps", "x"], "not a number of basis points"),
        (["--available", "1", "--projection", "1", "--var-bps", "1", "--now", "noon"], "noon"),
    ],
)
def test_decide_refuses_bad_arguments(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(["decide", *args])
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_schemas_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "schemas", "check")[0] == 0


def test_schemas_generate_and_stale(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                    tmp_path: Path) -> None:
    import schemas.catalog as catalog

    monkeypatch.setattr(catalog, "SCHEMA_DIR", tmp_path)
    code, out, _ = run(capsys, "schemas", "check")
    assert code == 1 and "differs from its model" in out
    code, out, _ = run(capsys, "schemas", "generate")
    assert code == 0 and "sweep_order.schema.json" in out
    assert run(capsys, "schemas", "check")[0] == 0


def test_var_compute_and_backtest(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    csv = tmp_path / "flows.csv"
    rows = ["account_id,date,net_flow_usd"] + [f"A,2025-01-{d:02d},{(-1) ** d * d * 1000}" for d in range(1, 29)]
    csv.write_text("\n".join(rows) + "\n")
    code, out, _ = run(capsys, "var", "compute", str(csv), "--window", "10", "--confidence", "0.9")
    result = json.loads(out)
    # last 10 days: d = 19..28, losses on odd days 19,21,23,25,27; 10 % of 10 -> the worst day: 27,000
    assert code == 0 and result["account_id"] == "A" and result["days"] == 10 and result["var_usd"] == 27000.0
    png = tmp_path / "bt.png"
    code, out, _ = run(capsys, "var", "backtest", str(csv), "--window", "10", "--confidence", "0.9", "--png", str(png))
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.strip()


SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "iso20022" / "genkgo-camt"


@pytest.mark.skipif(not SAMPLES.exists(), reason="shared/testdata not beside the repo")
def test_ingest_dry_run_prints_every_balance(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ingest", "--dry-run", str(SAMPLES / "camt053.v2.minimal.xml"),
                       str(SAMPLES / "camt052.v4.xml"))
    lines = [json.loads(line) for line in out.splitlines() if '"record": "entry"' not in line]  # balances
    assert code == 0 and lines
    # read from camt053.v2.minimal.xml: the OPBD opening balance of 18.15 EUR on 2014-12-30
    assert lines[0] == {**lines[0], "account_id": "NL26VAYB8060476890", "balance_code": "OPBD", "amount": "18.15",
                        "currency": "EUR", "as_of_ts": "2014-12-30T23:59:59.999Z"}


def test_ingest_refuses_a_bad_file_whole(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"event_id": "e1", "account_id": "A1", "as_of_ts": "2025-06-10T00:00:00Z",
                                "kind": "INTRADAY", "available_usd": "5"}))
    bad = tmp_path / "bad.xml"
    bad.write_text('<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt/></Document>')
    code, out, err = run(capsys, "ingest", "--dry-run", str(good), str(bad))
    assert code == 2 and out == "" and "bad.xml: refused" in err
    code, _, err = run(capsys, "ingest", "--dry-run", str(tmp_path / "missing.xml"))
    assert code == 2 and "missing.xml" in err


def test_run_goes_on_without_prometheus_when_it_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from serve_app.job.main_job import start_prometheus
    from treasury.settings import RuntimeSettings

    monkeypatch.setenv("PATH", str(tmp_path))
    logger = logging.getLogger("treasury.run")
    logger.addHandler(caplog.handler)  # the treasury logger does not propagate to the root's
    try:
        assert start_prometheus(RuntimeSettings(), tmp_path) is None
    finally:
        logger.removeHandler(caplog.handler)
    assert "Prometheus not started" in caplog.text and "bootstrap.sh" in caplog.text


@pytest.mark.parametrize("argv", [["infra", "status"], ["run", "--no-simulator"]])
def test_without_devstack_run_and_infra_say_so_in_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An installed wheel or image has no devstack/: one line naming it, exit 2, no traceback."""
    for name in [m for m in sys.modules if m == "devstack" or m.startswith("devstack.")] + ["serve_app.job.main_job"]:
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "devstack", None)  # what `import devstack` meets where it is not installed
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "devstack/" in err and "not part of this installation" in err
