"""Hostile input over REST (issue 9): schemathesis against the service's own OpenAPI document.

At least 1,000 generated requests, in-process against the ASGI app over the real Postgres and
Kafka: conforming ones (positive) and ones that break the document on purpose (negative). No
answer may be a 5xx, and every 4xx must be JSON naming the field. Derandomized, so a failure
reproduces with the same command; the failures are collected rather than shrunk, so the run
always sends the same number of requests.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from schemathesis.generation import GenerationMode
from schemathesis.python import asgi

from serve_app.rest.api import Backend, build_app
from treasury.metrics import ShardMetrics

pytestmark = pytest.mark.integration
# per generation mode; two modes -> 2 x this many requests
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "550"))
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class StandInShards:
    """The shards' answers without Ray: no live positions, always ready, no figures yet."""

    async def position(self, account_id: str) -> dict[str, Any] | None:
        return None

    async def ready(self) -> bool:
        return True

    async def metrics(self) -> list[ShardMetrics]:
        return []


class StandInJobs:
    """A VaR scheduler that records jobs and never runs them."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}

    async def submit(self, accounts: list[str] | None, window: int | None, confidence: float) -> str:
        job_id = str(uuid.uuid4())
        self.jobs[job_id] = {"job_id": job_id, "status": "queued"}
        return job_id

    async def status(self, job_id: str) -> dict[str, Any] | None:
        return self.jobs.get(job_id)


def with_lifespan(app: Any, on_shutdown: Callable[[], Awaitable[None]]) -> Any:
    """The app, closing the backend's pool and producer on the event loop that opened them."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await on_shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    return wrapped


def problem(response: requests.Response) -> str | None:
    """Why this answer breaks the contract, or None."""
    status = response.status_code
    if status >= 500:
        return f"server error {status}: {response.text[:300]}"
    if status < 400:
        return None
    try:
        error = response.json()["error"]
        field, reason = error["field"], error["reason"]
    except (ValueError, KeyError, TypeError):
        return f"{status} without a JSON error naming the field: {response.text[:300]}"
    if not (isinstance(field, str) and field and isinstance(reason, str) and reason):
        return f"{status} with an empty field or reason: {response.text[:300]}"
    return None


def test_generated_requests_get_no_5xx_and_every_4xx_names_the_field(  # type: ignore[no-untyped-def]
        stack, auth_headers: dict[str, str]) -> None:
    backend = Backend(stack.settings(), StandInShards(), StandInJobs())
    app = with_lifespan(build_app(backend), backend.close)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    sent: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    failures: list[str] = []

    def fuzz(client: asgi.ASGIClient, mode: GenerationMode) -> None:
        @hypothesis.settings(
            max_examples=EXAMPLES, derandomize=True, database=None, deadline=10_000,
            phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
        )
        @given(case=schema.as_strategy(generation_mode=mode))
        def send(case: Any) -> None:
            try:
                response = case.call(session=client, headers=auth_headers)
            except (requests.exceptions.InvalidHeader, UnicodeEncodeError, ValueError):
                sent["unsendable"] += 1  # the HTTP client refuses to put it on the wire
                return
            sent[mode.value] += 1
            statuses[response.status_code] += 1
            why = problem(response)
            if why is not None:
                failures.append(f"{mode.value} {case.method} {case.operation.path}: {case.as_curl_command()}\n"
                                f"  -> {why}")

        send()

    started = time.perf_counter()
    try:
        with asgi.get_client(app) as client:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                fuzz(client, mode)
    finally:
        asgi.shutdown_lifespans()

    total = sent["positive"] + sent["negative"]
    print(f"\nschemathesis: {total} requests ({dict(sent)}) in {time.perf_counter() - started:.0f} s,"
          f" statuses {dict(sorted(statuses.items()))}")
    assert not failures, f"{len(failures)} bad answers:\n" + "\n".join(failures[:20])
    assert total >= 2 * EXAMPLES * 0.9 and (EXAMPLES < 500 or total >= 1000)
    assert statuses[202] > 0 and statuses[422] > 0  # both accepted and refused requests were exercised
