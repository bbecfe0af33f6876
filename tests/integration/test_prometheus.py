"""The real Prometheus server (Debian's binary) as the run command starts it, on a plain exposition.

The full system is scraped in test_ray_system.py; here the server's own lifecycle is checked:
config and target list written, ready on a free loopback port, the target list re-read when it
changes, a second start on the same folder replaces the first, and stop leaves nothing running.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from devstack import prometheus, stack
from devstack.common import InfraError, pid_alive
from treasury.metrics import ShardMetrics, render

pytestmark = pytest.mark.integration


class _Exposition(BaseHTTPRequestHandler):
    body = render([ShardMetrics({"TBILL_4W": Decimal("1250000")}, {"applied": 7}, lag={3: 2})], {"SENT": 4}, 5)

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/metrics" else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def exposition() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Exposition)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def poll(server: prometheus.Server, expr: str, timeout: float = 60.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = server.query(expr)
        if result:
            return result
        time.sleep(0.5)  # polling interval under a deadline
    raise AssertionError(f"no series for {expr} within {timeout:.0f} s")


def test_scrapes_the_target_list_and_stops_exactly(exposition: str, tmp_path: Path) -> None:
    root = tmp_path / "prometheus"
    server = prometheus.start(root, prometheus.Targets(exposition), port=0, scrape_interval_s=1)
    try:
        assert json.loads(server.paths.targets.read_text()) == [
            {"targets": [exposition], "labels": {"component": "treasury-api"}}]
        [swept] = poll(server, 'treasury_swept_usd_total{product="TBILL_4W"}')
        assert swept["value"][1] == "1250000" and swept["metric"]["component"] == "treasury-api"
        assert poll(server, 'treasury_consumer_lag{partition="3"}')[0]["value"][1] == "2"
        assert poll(server, "treasury_config_version")[0]["value"][1] == "5"

        # the target list is the one place to change: a new group is picked up without a restart
        prometheus.write_targets(server.paths, prometheus.Targets(exposition, ("127.0.0.1:1",)))
        down = poll(server, 'up{component="ray"} == 0')
        assert down[0]["metric"]["instance"] == "127.0.0.1:1"

        again = prometheus.start(root, prometheus.Targets(exposition), port=0, scrape_interval_s=1)
        assert not pid_alive(server.pid) and again.pid != server.pid  # one data dir, one server
        server = again
    finally:
        prometheus.stop(server)
    assert not pid_alive(server.pid) and not server.paths.pid_file.exists()
    prometheus.stop(server)  # stopping twice is harmless


def test_infra_down_stops_a_server_a_killed_run_left_behind(exposition: str, tmp_path: Path) -> None:
    """`run` killed before its cleanup leaves its Prometheus running from the stack home; the next
    `infra down` of that home stops it (it spun at 90 % of a core once its data folder was gone)."""
    home = tmp_path / "home"
    left = prometheus.start(home / "prometheus", prometheus.Targets(exposition), port=0, scrape_interval_s=1)
    assert pid_alive(left.pid)
    stack.down(home)
    assert not pid_alive(left.pid)


def test_a_server_that_cannot_start_says_why(exposition: str, tmp_path: Path) -> None:
    root = tmp_path / "prometheus"
    (root / "data").mkdir(parents=True)
    (root / "data" / "wal").write_text("a file where the write-ahead log folder must be")
    with pytest.raises(InfraError, match=r"(?s)did not become ready.*opening storage failed"):
        prometheus.start(root, prometheus.Targets(exposition), port=0)


def test_missing_binary_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InfraError, match=r"bootstrap\.sh"):
        prometheus.binary()
