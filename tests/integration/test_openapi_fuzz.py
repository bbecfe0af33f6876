"""Hostile input over REST (issue 9): schemathesis against the service's own OpenAPI document.

At least 1,000 generated requests, in-process against the ASGI app over the real Postgres and
Kafka: conforming ones (positive) and ones that break the document on purpose (negative). No
answer may be a 5xx, and every 4xx must be JSON naming the field. Derandomized, so a failure
reproduces with the same command; the failures are collected rather than shrunk, so the run
always sends the same number of requests.

The OpenAPI document is also the contract Bank-Connector teams generate clients from (issue 15):
a second run uses schemathesis's own engine with every check and every phase (coverage: each
documented boundary, missing parameter, missing token and unlisted verb; fuzzing: a bounded
number of cases per operation and mode) and allows no failure at all: every status an operation
answers is documented with its body's schema, and the constraints the document states are the
ones the server enforces.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events
from schemathesis.generation import GenerationMode
from schemathesis.hooks import HookContext
from schemathesis.python import asgi

from serve_app.rest.api import Backend, build_app
from storage import accounts, idempotency
from storage.accounts import Account
from storage.db import create_pool
from tests.integration.camt_samples import camt053
from treasury.clock import as_utc, iso_z, utc_now
from treasury.metrics import ShardMetrics
from treasury.money import MAX_ABS_USD

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


# Every check schemathesis has (max_response_time needs a limit, and timing is not a contract).
ALL_CHECKS = (
    "not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance",
    "response_headers_conformance", "positive_data_acceptance", "negative_data_rejection", "use_after_free",
    "ensure_resource_availability", "missing_required_header", "ignored_auth", "object_level_authorization",
    "unsupported_method", "allow_header_conformance",
)
# per operation and generation mode in the fuzzing phase; the examples and coverage phases add
# their own deterministic cases (every documented boundary, missing parameter and unknown verb)
CONTRACT_EXAMPLES = int(os.environ.get("CONTRACT_EXAMPLES", "15"))
FUZZ_ACCOUNT = "FUZZ-CONTRACT-1"


def contract_config(auth_headers: dict[str, str]) -> SchemathesisConfig:
    """All checks, every phase that applies, a fixed seed: a failure reproduces with the same command."""
    return SchemathesisConfig.from_dict({
        "seed": int(os.environ.get("CONTRACT_SEED", "20251130")),
        "auth": {"openapi": {"HTTPBearer": {"bearer": auth_headers["Authorization"].removeprefix("Bearer ")}}},
        "workers": 1,
        "generation": {"max-examples": CONTRACT_EXAMPLES, "mode": "all", "database": "none", "no-shrink": True},
        "checks": {name: {"enabled": True} for name in ALL_CHECKS},
        "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True},
                   "stateful": {"enabled": True}},
    })


async def register_fuzz_account(dsn: str) -> None:
    """Conforming balances name a registered account (the document cannot say which accounts exist);
    its minimum balance is the largest amount a balance may carry, so none of them starts a sweep."""
    pool = await create_pool(dsn, max_size=1)
    try:
        await accounts.upsert(pool, [Account(account_id=FUZZ_ACCOUNT, esg_pref=False, min_balance_usd=MAX_ABS_USD,
                                              aml_tags={})])
    finally:
        await pool.close()


def map_case(context: HookContext, case: Any) -> Any:
    """What the document cannot state but a conforming client does: it posts balances of a registered
    account (a camt file when it posts XML, since JSON Schema cannot describe one), and it takes a
    new Idempotency-Key for a new request (a key reused with another body is 422, as documented)."""
    del context
    key = next((k for k in case.headers or {} if k.lower() == "idempotency-key"), None)
    if key is not None and idempotency.valid_key(str(case.headers[key])):
        case.headers[key] = f"fuzz-{uuid.uuid4().hex}"
    if case.meta is None or not case.meta.generation.mode.is_positive or case.operation.path != "/balances":
        return case
    if case.media_type == "application/xml":
        case.body = camt053(FUZZ_ACCOUNT).decode()  # a string, as the document's binary body
    elif isinstance(case.body, dict):
        case.body = {**case.body, "account_id": FUZZ_ACCOUNT}
        if not_before_now(case.body.get("as_of_ts")):  # a bank reports balances already taken
            case.body["as_of_ts"] = iso_z(utc_now())
    return case


def not_before_now(value: Any) -> bool:
    """A date-time the service would refuse as future (MAX_CLOCK_SKEW_S), which JSON Schema cannot say."""
    try:
        return isinstance(value, str) and as_utc(datetime.fromisoformat(value.replace("Z", "+00:00"))) > utc_now()
    except ValueError:
        return False


def failures_of(recorder: Any) -> list[str]:
    """Each failed check: the check, the operation, what it said and the curl command that reproduces it."""
    return [f"{check.name} {check.failure_info.failure.operation}: {check.failure_info.failure.title}\n"
            f"  {check.failure_info.failure.message}\n  {check.failure_info.code_sample}"
            for checks in recorder.checks.values() for check in checks if check.failure_info is not None]


def test_the_openapi_document_is_the_contract_all_checks_pass(  # type: ignore[no-untyped-def]
        stack, auth_headers: dict[str, str]) -> None:
    """Every schemathesis check, every phase: each answer is documented (status, body schema, content
    type, headers), documented constraints are the ones enforced (conforming requests are accepted,
    others refused), an unlisted verb is 405 with ``Allow``, a request without its token is 401."""
    asyncio.run(register_fuzz_account(stack.postgres_dsn))

    backend = Backend(stack.settings(), StandInShards(), StandInJobs())
    app = with_lifespan(build_app(backend), backend.close)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=contract_config(auth_headers))

    schema.hook(map_case)  # a conforming client's choices, on this schema only

    cases: Counter[str] = Counter()
    modes: Counter[str] = Counter()
    checked: Counter[str] = Counter()
    failures: list[str] = []
    errors: list[str] = []
    started = time.perf_counter()
    try:
        for event in schemathesis.engine.from_schema(schema).execute():
            if isinstance(event, events.ScenarioFinished):
                cases[event.phase.value] += len(event.recorder.interactions)
                modes.update(node.value.meta.generation.mode.value for node in event.recorder.cases.values()
                             if node.value.meta is not None)
                checked.update(check.name for nodes in event.recorder.checks.values() for check in nodes)
                failures.extend(failures_of(event.recorder))
            elif isinstance(event, events.NonFatalError | events.FatalError):
                what = event.value if isinstance(event, events.NonFatalError) else event.exception
                errors.append(f"{getattr(event, 'label', 'engine')}: {what}")
            elif isinstance(event, events.EngineFinished):
                failures.extend(f"{f.operation}: {f.title}: {f.message}" for f in event.failures)
    finally:
        asgi.shutdown_lifespans()

    print(f"\nschemathesis, all {len(ALL_CHECKS)} checks: {sum(cases.values())} requests ({dict(cases)};"
          f" cases {dict(modes)}) in {time.perf_counter() - started:.0f} s, {sum(checked.values())} checks run"
          f" ({dict(sorted(checked.items()))}), {len(failures)} failures")
    assert not errors and not failures, "\n".join([f"{len(failures)} contract failures:", *failures[:30],
                                                    f"{len(errors)} errors:", *errors[:10]])
    assert cases["coverage"] > 0 and cases["fuzzing"] > 0 and modes["positive"] > 0 and modes["negative"] > 0
    # the checks the run failed on, and the ones only the coverage phase can run, did run
    assert {"status_code_conformance", "response_schema_conformance", "positive_data_acceptance",
            "negative_data_rejection", "unsupported_method", "ignored_auth", "missing_required_header"} <= set(checked)
