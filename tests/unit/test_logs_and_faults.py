from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from treasury.faults import crash_point
from treasury.logs import JsonFormatter, configure_logging, trace_context


def test_log_lines_are_json_with_context() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("treasury.test-json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.info("decided %s", "x", extra={"trace_id": "t1", "account_id": "A1", "order_id": "o1", "decision": "d"})
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["msg"] == "decided x" and first["level"] == "INFO" and first["logger"] == "treasury.test-json"
    assert {k: first[k] for k in ("trace_id", "account_id", "order_id", "decision")} == {
        "trace_id": "t1", "account_id": "A1", "order_id": "o1", "decision": "d"}
    assert first["ts"].endswith("Z") and "ValueError: boom" in second["exc"]


def test_every_line_names_its_trace_even_when_there_is_none() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("treasury.test-trace")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.info("outside")
    with trace_context("req-1"):
        logger.info("inside", extra={"account_id": "A1"})
        logger.info("explicit", extra={"trace_id": "other"})
    logger.info("after")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(x["msg"], x["trace_id"]) for x in lines] == [
        ("outside", None), ("inside", "req-1"), ("explicit", "other"), ("after", None)]
    assert lines[1]["account_id"] == "A1" and "order_id" not in lines[1]


def test_configure_logging_is_idempotent() -> None:
    configure_logging("WARNING")
    configure_logging("WARNING")
    handlers = [h for h in logging.getLogger("treasury").handlers if isinstance(h.formatter, JsonFormatter)]
    assert len(handlers) == 1


def test_crash_point_is_inert_unless_armed(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    crash_point("somewhere")  # not armed at all
    monkeypatch.setenv("TREASURY_CRASH_AT", "elsewhere")
    crash_point("somewhere")  # armed for another point
    marker = tmp_path / "done"
    marker.write_text("fired before")
    monkeypatch.setenv("TREASURY_CRASH_AT", "somewhere")
    monkeypatch.setenv("TREASURY_CRASH_ONCE_FILE", str(marker))
    crash_point("somewhere")  # already fired once: the restarted process lives


def test_crash_point_kills_the_process_once(tmp_path: Path) -> None:
    marker = tmp_path / "done"
    env = {**os.environ, "TREASURY_CRASH_AT": "here", "TREASURY_CRASH_ONCE_FILE": str(marker)}
    code = "from treasury.faults import crash_point; crash_point('here'); print('survived')"
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert first.returncode == 137 and "survived" not in first.stdout and marker.read_text() == "here"
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert second.returncode == 0 and "survived" in second.stdout
