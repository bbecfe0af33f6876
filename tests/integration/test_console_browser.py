"""The treasurer's console in a real headless browser, on the real stack (issue 20 point 4).

Kafka, Postgres and OpenBao are the test stack's; a real shard and a real coordinator run in this
process (as in the pipeline tests) with the coordinator's loop publishing released orders; the app
runs under uvicorn on 127.0.0.1 in the same event loop, and Debian's Chromium (scripts/bootstrap.sh),
driven by Playwright's async API, signs in with JWTs signed by the stack's Transit key. Every request
the page makes is recorded: one to another host than 127.0.0.1 fails the test (and is refused), and so
does any Content-Security-Policy or Trusted Types violation and any script error.

Screenshots go to bench/out/console/ (git-ignored); their paths are printed.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
import uvicorn
from playwright.async_api import Browser, BrowserContext, Page, Route, async_playwright

from actors import kafka_clients
from actors.coordinator import Coordinator
from actors.shard import ShardWorker
from serve_app.rest.api import Backend, build_app
from tests.integration.conftest import LocalShards, new_accounts, register
from tests.integration.kafka_tools import close_producer, high_watermarks, read_from, skip_to_end
from tests.integration.test_console_api import post_closes
from treasury.auth import Scope, mint_token
from treasury.envelope import EnvelopeCipher
from treasury.keyring import Keyring
from treasury.settings import PolicyConfig

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENS = Path(__file__).resolve().parents[2] / "bench" / "out" / "console"
WAIT_MS = 30_000
TREASURER = ["balances:read", "orders:read", "risk:run"]
APPROVER = ["balances:read", "orders:read", "orders:approve"]
READER = ["balances:read", "orders:read"]


@dataclass
class Desk:
    """The served app, the ledger, and a way to sign tokens for any subject."""

    url: str
    pool: asyncpg.Pool
    keyring: Keyring
    signing_key: str
    kafka: str
    intent_start: dict[int, int]
    problems: list[str] = field(default_factory=list)

    def token(self, subject: str, scopes: list[str]) -> str:
        return mint_token(self.keyring, self.signing_key, subject, scopes)

    def http(self, scopes: list[str] | None = None) -> httpx.AsyncClient:
        token = self.token("console-test", scopes or [s.value for s in Scope])
        return httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    async def status(self, order_id: str) -> str | None:
        return await self.pool.fetchval("SELECT status FROM sweep_order WHERE order_id = $1", order_id)

    async def until(self, what: str, check: Callable[[], Awaitable[Any]], timeout: float = 60) -> Any:
        """Wait (on the loop the shard and coordinator run on) until ``check`` returns something true."""
        async def poll() -> Any:
            while not (value := await check()):
                await asyncio.sleep(0.1)
            return value
        try:
            return await asyncio.wait_for(poll(), timeout)
        except TimeoutError:
            raise AssertionError(f"{what}: not within {timeout:.0f} s") from None


async def _desk(stack: Any, pool: asyncpg.Pool, keyring: Keyring, approval: bool) -> AsyncIterator[Desk]:
    settings = stack.settings().model_copy(update={"prometheus_port": 0})  # never another stack's Prometheus
    group = f"console-{uuid.uuid4().hex[:8]}"
    skip_to_end(stack.kafka_bootstrap, group, "balance_events")
    intent_start = high_watermarks(stack.kafka_bootstrap, "sweep_intent")
    producer = kafka_clients.producer(stack.kafka_bootstrap)
    extra = {"approval": settings.approval_rule()} if approval else {}
    coordinator = Coordinator(pool, producer, stack.kafka_bootstrap, keyring=keyring,
                              signing_key=settings.order_signing_key, **extra)
    await coordinator.start()
    worker = ShardWorker(0, 1, pool, kafka_clients.consumer(stack.kafka_bootstrap, group=group), producer,
                         coordinator, PolicyConfig(), cipher=EnvelopeCipher(keyring, settings.data_key))
    await worker.start()
    backend = Backend(settings, LocalShards(worker))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(build_app(backend), log_level="warning", lifespan="off"))
    stop = asyncio.Event()

    async def shard_loop() -> None:
        while not stop.is_set():
            await worker.poll_once(timeout=0.1)

    tasks = [asyncio.create_task(server.serve(sockets=[sock])), asyncio.create_task(shard_loop()),
             asyncio.create_task(coordinator.run(stop))]
    desk = Desk(f"http://127.0.0.1:{sock.getsockname()[1]}", pool, keyring, settings.token_signing_key,
                stack.kafka_bootstrap, intent_start)
    await desk.until("uvicorn started", lambda: asyncio.sleep(0, server.started), 30)
    try:
        yield desk
    finally:
        stop.set()
        server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        await worker.close()
        await backend.close()
        close_producer(producer)
        sock.close()


@pytest.fixture
async def desk(stack: Any, pool: asyncpg.Pool, keyring: Keyring) -> AsyncIterator[Desk]:
    async for d in _desk(stack, pool, keyring, approval=False):
        yield d


@pytest.fixture
async def approval_desk(stack: Any, pool: asyncpg.Pool, keyring: Keyring) -> AsyncIterator[Desk]:
    async for d in _desk(stack, pool, keyring, approval=True):
        yield d


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert Path(CHROMIUM).exists(), "no chromium: scripts/bootstrap.sh installs Debian's"
    SCREENS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            await b.close()


async def signed_in(browser: Browser, desk: Desk, subject: str, scopes: list[str],
                    shot: str | None = None) -> tuple[BrowserContext, Page]:
    """A fresh browser context (its own sessionStorage) signed in as ``subject``."""
    context = await browser.new_context(viewport={"width": 1360, "height": 900})

    async def route(r: Route) -> None:
        if urlsplit(r.request.url).hostname == "127.0.0.1" or r.request.url.startswith("data:"):
            await r.continue_()
        else:
            desk.problems.append(f"external request: {r.request.url}")
            await r.abort()

    await context.route("**/*", route)
    page = await context.new_page()
    page.on("console", lambda m: desk.problems.append(f"{subject} console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: desk.problems.append(f"{subject} pageerror: {e}"))
    await page.goto(desk.url + "/console", wait_until="load")
    await page.wait_for_selector("textarea#token", timeout=WAIT_MS)
    if shot:
        await screenshot(page, shot)
    await page.fill("textarea#token", desk.token(subject, scopes))
    await page.click("#sign-in")
    await page.wait_for_selector(f"#subject:text-is('{subject}')", timeout=WAIT_MS)
    return context, page


async def screenshot(page: Page, name: str) -> Path:
    path = SCREENS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    print(f"screenshot {name}: {path}")
    assert path.stat().st_size > 5_000
    return path


async def tab(page: Page, view: str, ready: str) -> None:
    await page.click(f"#tab-{view}")
    await page.wait_for_selector(f"#view-{view} {ready}", timeout=WAIT_MS)


def exact_usd(text: str) -> str:
    """What the console shows for a decimal string: separators, every significant place, at least cents."""
    whole, _, fraction = text.partition(".")
    return f"{int(whole):,}.{fraction.rstrip('0').ljust(2, '0')}"


def balance(account: str, event_id: str, available: str) -> dict[str, object]:
    from datetime import UTC, datetime
    return {"event_id": event_id, "account_id": account, "as_of_ts": datetime.now(UTC).isoformat(),
            "kind": "INTRADAY", "available_usd": available, "projected_outflows_24h_usd": "2000000"}


async def test_a_treasurer_signs_in_and_sees_positions_orders_charts_and_a_what_if(
        desk: Desk, browser: Browser) -> None:
    [a] = new_accounts(min_balance_usd=Decimal("1000000"))
    await register(desk.pool, [a], var_usd=Decimal("8000"))
    # Three more accounts, one order each (TBILL_4W, CARBON_NOTE for ESG, FED_RRP on a VaR breach), for the ladder.
    plain, esg, risky = new_accounts(3)
    esg = type(esg)(esg.account_id, esg_pref=True)
    await register(desk.pool, [plain, esg], var_usd=Decimal("8000"))
    await register(desk.pool, [risky], var_usd=Decimal("50000"))
    async with desk.http() as http:
        days = await post_closes(http, a.account_id)
        for n, acct in enumerate([a, plain, esg, risky]):
            posted = await http.post("/balances", json=balance(acct.account_id, f"live-{n}", "10000000"))
            assert posted.status_code == 202, posted.text
        order_id = await desk.until("the order is sent", lambda: desk.pool.fetchval(
            "SELECT order_id FROM sweep_order WHERE account_id = $1 AND status = 'SENT'", a.account_id))

        async def three_sent() -> list[Any] | None:
            rows = await desk.pool.fetch(
                "SELECT order_id, account_id, product, amount_usd FROM sweep_order"
                " WHERE account_id = ANY($1::varchar[]) AND status = 'SENT'",
                [plain.account_id, esg.account_id, risky.account_id])
            return rows if len(rows) == 3 else None

        ladder = await desk.until("the ladder's orders are sent", three_sent)
        # The investment book as settlement would open it (docs/settlement.md), seeded here: the console reads it.
        await desk.pool.executemany(
            "INSERT INTO investment (order_id, account_id, product, principal_usd, value_date, maturity_date)"
            " VALUES ($1, $2, $3, $4, current_date, current_date + $5::int)",
            [(r["order_id"], r["account_id"], r["product"], r["amount_usd"],
              {"FED_RRP": 1, "TBILL_4W": 28, "CARBON_NOTE": 91}[r["product"]]) for r in ladder])
        assert {r["product"] for r in ladder} == {"FED_RRP", "TBILL_4W", "CARBON_NOTE"}
        await desk.until("the closes are stored", lambda: desk.pool.fetchval(
            "SELECT count(*) >= $2 FROM balance WHERE account_id = $1 AND balance_code = 'CLBD'",
            a.account_id, len(days)))

        context, page = await signed_in(browser, desk, "treasurer@bank", TREASURER, shot="01-sign-in")
        assert await page.text_content("#scopes") == " ".join(TREASURER)
        row = page.locator(f"tr[data-account='{a.account_id}']")
        await row.wait_for(timeout=WAIT_MS)
        text = await row.inner_text()
        assert "10,000,000.00" in text and "8,400,000.00" in text and "last_seen" in text, text
        await screenshot(page, "02-positions")

        # A reason with markup, as a Bank-Connector might send: the console shows it as text.
        hostile = '<img src=x id=pwned><b>frozen</b> & "closed"'
        failed = await http.post(f"/sweep-intent/{order_id}/fail", json={"reason": hostile})
        assert failed.status_code == 200, failed.text

    await tab(page, "orders", f"tr[data-order='{order_id}']")
    listed = await page.locator(f"tr[data-order='{order_id}']").inner_text()
    assert "FAILED" in listed and "VaR" in listed, listed
    await page.click(f"tr[data-order='{order_id}'] a.order-link")
    await page.wait_for_selector("#view-orders .detail h4:text-is('Status history')", timeout=WAIT_MS)
    detail = await page.locator("#view-orders .detail").inner_text()
    assert hostile in detail and "within_limit" in detail and "SENT" in detail, detail
    assert await page.locator("#pwned").count() == 0 and await page.locator(".detail b").count() == 0
    await screenshot(page, "03-order-detail")

    await tab(page, "backtest", "select#backtest-account")
    await page.select_option("#backtest-account", a.account_id)
    plot = f"#view-backtest [data-account='{a.account_id}']"  # not the account shown before the pick
    await page.wait_for_selector(f"{plot} th:text-is('Basel traffic light')", timeout=WAIT_MS)
    assert await page.locator(f"{plot} svg.chart path.marker").count() == 1  # the one large loss
    assert await page.locator(f"{plot} svg.chart path.series").count() == 2  # flows and -VaR
    await screenshot(page, "04-var-backtest")

    await tab(page, "ladder", "svg.chart rect.bar")
    ladder_text = await page.locator("#view-ladder").inner_text()
    async with desk.http() as http:
        rungs = (await http.get("/investments")).json()["ladder"]  # the ledger may hold other tests' too
    for r in ladder:
        day = (await desk.pool.fetchval("SELECT maturity_date FROM investment WHERE order_id = $1", r["order_id"]))
        [rung] = [x for x in rungs if x["maturity_date"] == day.isoformat() and x["product"] == r["product"]]
        assert Decimal(rung["principal_usd"]) >= r["amount_usd"]
        shown = f"{rung['maturity_date']}\t{rung['product']}\t{exact_usd(rung['principal_usd'])}"
        assert shown in ladder_text, (shown, [line for line in ladder_text.splitlines() if r["product"] in line])
    assert await page.locator("#view-ladder svg.chart rect.bar").count() >= 3
    await screenshot(page, "05-ladder")

    await tab(page, "metrics", "svg.chart")
    metrics = await page.locator("#view-metrics").inner_text()
    assert "service's own figures" in metrics and "Decision latency p50 / p95" in metrics, metrics
    assert await page.locator("#view-metrics svg.chart").count() == 3
    await screenshot(page, "06-metrics")

    await tab(page, "config", "table.facts")
    config = await page.locator("#view-config").inner_text()
    assert "LIQ_BUFFER_PCT" in config and "version" in config and "approval_threshold_usd" in config, config
    await screenshot(page, "07-config")

    await tab(page, "whatif", "select#whatif-account")
    await page.select_option("#whatif-account", a.account_id)
    await page.fill("#set-LIQ_BUFFER_PCT", "0.9")
    await page.click("#whatif-run")
    await page.wait_for_selector("#whatif-result table", timeout=WAIT_MS)
    result = await page.locator("#whatif-result").inner_text()
    assert "1,800,000.00" in result and "600,000.00" in result, result  # 0.9 and 0.3 of the 2M projection
    await screenshot(page, "08-what-if")
    await context.close()
    assert desk.problems == [], desk.problems


async def approve_in_page(page: Page, order_id: str, comment: str) -> str:
    row = page.locator(f"tr[data-order='{order_id}']")
    await row.wait_for(timeout=WAIT_MS)
    before = await page.locator("#approval-result").inner_text()
    await row.locator("input.comment").fill(comment)
    await row.locator("button.approve").click()
    await page.wait_for_function("b => document.querySelector('#approval-result').innerText !== b", arg=before,
                                 timeout=WAIT_MS)
    return await page.locator("#approval-result").inner_text()


async def test_two_approvers_release_a_large_order_and_a_reader_can_neither_see_buttons_nor_approve(
        approval_desk: Desk, browser: Browser) -> None:
    desk = approval_desk
    [a] = new_accounts()
    await register(desk.pool, [a], var_usd=Decimal("8000"))
    async with desk.http() as http:
        assert (await http.post("/balances", json=balance(a.account_id, "big-1", "100000000"))).status_code == 202
    order_id = await desk.until("the large order awaits approval", lambda: desk.pool.fetchval(
        "SELECT order_id FROM sweep_order WHERE account_id = $1 AND status = 'AWAITING_APPROVAL'", a.account_id))

    alice_ctx, alice = await signed_in(browser, desk, "alice@treasury", APPROVER)
    await tab(alice, "approvals", f"tr[data-order='{order_id}']")
    row = await alice.locator(f"tr[data-order='{order_id}']").inner_text()
    assert "99,400,000.00" in row and "0 of 2" in row, row
    first = await approve_in_page(alice, order_id, "checked the ladder")
    assert "AWAITING_APPROVAL" in first and "1 approval(s)" in first, first
    assert "alice@treasury" in await alice.locator(f"tr[data-order='{order_id}']").inner_text()
    await screenshot(alice, "09-approval-first")
    again = await approve_in_page(alice, order_id, "again")
    assert "(unchanged)" in again and "AWAITING_APPROVAL" in again, again
    assert await desk.status(order_id) == "AWAITING_APPROVAL"

    carol_ctx, carol = await signed_in(browser, desk, "carol@treasury", READER)
    await tab(carol, "approvals", f"tr[data-order='{order_id}']")
    assert "lacks the orders:approve scope" in await carol.locator("#view-approvals").inner_text()
    assert await carol.locator("button.approve, button.reject").count() == 0
    refused = await carol.evaluate("""async (id) => {
        const r = await fetch(`/sweep-intent/${id}/approve`, {method: "POST", headers: {
            Authorization: `Bearer ${sessionStorage.getItem("treasury.console.token")}`,
            "Content-Type": "application/json"}, body: JSON.stringify({comment: "me too"})});
        return [r.status, await r.text()];
    }""", order_id)
    assert refused[0] == 403 and "orders:approve" in refused[1], refused
    # Chromium logs the refused call it was asked to make; that one, and nothing else, is expected.
    expected = [p for p in desk.problems if p.startswith("carol@treasury console error: Failed to load resource")
                and "403" in p]
    assert len(expected) == 1, desk.problems
    desk.problems.remove(expected[0])
    await screenshot(carol, "10-approval-read-only")
    assert await desk.status(order_id) == "AWAITING_APPROVAL"

    bob_ctx, bob = await signed_in(browser, desk, "bob@treasury", APPROVER)
    await tab(bob, "approvals", f"tr[data-order='{order_id}']")
    second = await approve_in_page(bob, order_id, "agreed")
    assert "NEW" in second and "2 approval(s)" in second, second
    await desk.until("the released order is published", lambda: desk.pool.fetchval(
        "SELECT status = 'SENT' FROM sweep_order WHERE order_id = $1", order_id))
    await tab(bob, "orders", f"tr[data-order='{order_id}'][data-status='SENT']")
    await bob.click(f"tr[data-order='{order_id}'] a.order-link")
    await bob.wait_for_selector("#view-orders .detail h4:text-is('Status history')", timeout=WAIT_MS)
    await screenshot(bob, "11-approval-released")
    keys = [(m.key() or b"").decode() for m in read_from(desk.kafka, "sweep_intent", desk.intent_start, expect=1)]
    assert keys.count(order_id) == 1, "published exactly once"
    for context in (alice_ctx, bob_ctx, carol_ctx):
        await context.close()
    assert desk.problems == [], desk.problems


@pytest.fixture
async def bare() -> AsyncIterator[str]:
    """The app alone (no stack: the page and its files touch no backend), on 127.0.0.1 in this loop."""
    from tests.unit.test_console import FakeBackend

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(build_app(FakeBackend()), log_level="warning", lifespan="off"))  # type: ignore[arg-type]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done(), "uvicorn stopped"
        await asyncio.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    await task
    sock.close()


async def test_the_browser_enforces_the_policy_and_the_helpers_make_text_not_markup(
        bare: str, browser: Browser) -> None:
    page = await browser.new_page()
    await page.goto(bare + "/console", wait_until="load")
    await page.wait_for_selector("textarea#token", timeout=WAIT_MS)
    found = await page.evaluate("""async () => {
        const dom = await import("/console/dom.js");
        const api = await import("/console/api.js");
        const out = {};
        try { document.body.innerHTML = "<b>x</b>"; out.innerHTML = "allowed"; }
        catch (e) { out.innerHTML = e.name; }
        try { dom.h("div", { onclick: "alert(1)" }); out.onclick = "allowed"; } catch (e) { out.onclick = "refused"; }
        try { dom.h("div", { style: "color: red" }); out.style = "allowed"; } catch (e) { out.style = "refused"; }
        const p = dom.h("p", null, "<img src=x id=pwned>", 7, null);
        out.text = p.textContent; out.children = p.children.length;
        out.usd = [dom.usd("1234567.891"), dom.usd("-5"), dom.usd("1000000.0000"), dom.usd(null), dom.usd("abc")];
        const jwt = ["e30", btoa(JSON.stringify({sub: "a<b>", scope: "orders:read orders:approve", exp: 1}))
            .replace(/=+$/, ""), "sig"].join(".");
        const c = api.claims(jwt);
        out.claims = [c.sub, [...c.scopes].sort().join(" "), c.exp.toISOString()];
        out.notJwt = api.claims("not a token");
        return out;
    }""")
    await page.close()
    assert found["innerHTML"] == "TypeError"  # Trusted Types required, no policy: markup from a string throws
    assert found["onclick"] == "refused" and found["style"] == "refused"
    assert found["text"] == "<img src=x id=pwned>7" and found["children"] == 0
    assert found["usd"] == ["1,234,567.891", "-5.00", "1,000,000.00", "-", "abc"]  # exact, never rounded
    assert found["claims"] == ["a<b>", "orders:approve orders:read", "1970-01-01T00:00:01.000Z"]
    assert found["notJwt"] is None
