"""The console's metric charts from the real Prometheus (Debian's binary, as ``run`` starts it).

A plain exposition stands in for the ingress (test_prometheus.py does the same); the app asks the
Prometheus on 127.0.0.1 for the charts' series only when that Prometheus scrapes this very service
(its ``SERVE_HOST:SERVE_PORT`` is a ``treasury-api`` target), else it answers the service's own figures.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from devstack import prometheus
from tests.integration.test_prometheus import exposition  # noqa: F401  (the fixture)
from tests.unit.test_console import FakeBackend, get
from treasury.metrics import ShardMetrics

pytestmark = pytest.mark.integration


@pytest.fixture
def scraper(exposition: str, tmp_path: Path) -> Iterator[prometheus.Server]:  # noqa: F811
    server = prometheus.start(tmp_path / "prometheus", prometheus.Targets(exposition), port=0, scrape_interval_s=1)
    try:
        yield server
    finally:
        prometheus.stop(server)


def backend_for(server: prometheus.Server, api: str) -> Any:
    backend = FakeBackend([ShardMetrics({"FED_RRP": Decimal("3")})])
    host, port = api.rsplit(":", 1)
    backend.settings = backend.settings.model_copy(update={"prometheus_port": server.port, "serve_host": host,
                                                           "serve_port": int(port)})
    return backend


async def test_the_charts_come_from_the_prometheus_that_scrapes_this_service(
        scraper: prometheus.Server, exposition: str) -> None:  # noqa: F811
    backend = backend_for(scraper, exposition)
    deadline = time.monotonic() + 60
    while True:
        body = (await get("/metrics/series?window_s=300", backend)).json()
        swept = {s["label"]: s["points"] for s in body["series"]["swept_usd"]} if body["source"] == "prometheus" else {}
        if swept.get("TBILL_4W"):
            break
        assert time.monotonic() < deadline, f"no series from Prometheus within 60 s: {body}"
        await asyncio.sleep(0.5)  # polling under a deadline: Prometheus scrapes every second
    assert body["prometheus"] == scraper.url
    assert all(value == 1_250_000.0 for _, value in swept["TBILL_4W"])  # the exposition's figure
    assert [s["label"] for s in body["series"]["latency_seconds"]] == ["p50", "p95"]
    assert body["series"]["var_bps"][0]["label"] == "max over accounts"


async def test_a_prometheus_scraping_another_service_is_not_used(scraper: prometheus.Server) -> None:
    backend = backend_for(scraper, "127.0.0.1:1")  # this service is not among its targets
    body = (await get("/metrics/series", backend)).json()
    assert body["source"] == "service" and body["prometheus"] is None
    assert {s["label"]: s["points"][0][1] for s in body["series"]["swept_usd"]}["FED_RRP"] == 3.0
