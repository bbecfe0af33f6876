"""``treasury-orch run``'s demo: the simulated accounts, their seeded past, then the live feed and bank.

Each run registers its own accounts (``DEMO<MMDDhhmm>-<8 digits>``: a run never mistakes an earlier
run's events or orders for its own on a stack that kept its data), seeds their history
(``serve_app.job.bank.seed``), then streams the live feed from the model bank while the demo
Bank-Connector executes the orders and books the maturities (``serve_app.job.bank.connector``).
The walk of one order through all of it: docs/demo.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

import httpx

from actors import kafka_clients
from serve_app.job import simulator
from serve_app.job.bank.connector import BankConnector, BankError
from serve_app.job.bank.model import ModelBank, seed_plan
from serve_app.job.bank.seed import SeedSummary, seed_history
from storage import accounts
from storage.db import create_pool
from treasury.auth import MAX_TTL_S, mint_token
from treasury.clock import utc_now
from treasury.keyring import keyring_from_settings
from treasury.settings import PolicyConfig, RuntimeSettings

log = logging.getLogger("treasury.demo_bank")
BANK_SCOPES = ["orders:read", "orders:write"]  # what a Bank-Connector holds
OPERATOR_SCOPES = ["balances:read", "risk:run"]  # the demo's own look at the ledger, and its VaR recompute
HISTORY_DAYS = 260


class TransitToken(httpx.Auth):
    """A JWT minted as ``treasury-orch token`` mints it (Vault Transit signs), renewed at half its life."""

    def __init__(self, mint: Callable[[], str], ttl_s: int) -> None:
        self._mint, self._ttl_s = mint, ttl_s
        self._token: str | None = None
        self._minted = 0.0

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._token is None or time.monotonic() - self._minted > self._ttl_s / 2:
            self._token, self._minted = self._mint(), time.monotonic()
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


def api_client(settings: RuntimeSettings, subject: str, scopes: list[str]) -> httpx.AsyncClient:
    """A client of the local REST API signed in as ``subject`` (no token when AUTH=off)."""
    # compared with, not bound to: a server on every interface is reached on loopback
    host = "127.0.0.1" if settings.serve_host in ("0.0.0.0", "::") else settings.serve_host  # noqa: S104  # nosec B104
    auth: httpx.Auth | None = None
    if settings.auth == "jwt":
        keyring = keyring_from_settings(settings)
        ttl = min(MAX_TTL_S, 12 * 3600)
        auth = TransitToken(lambda: mint_token(keyring, settings.token_signing_key, subject, scopes, ttl,
                                               settings.jwt_audience), ttl)
    return httpx.AsyncClient(base_url=f"http://{host}:{settings.serve_port}", auth=auth, timeout=30.0)


@dataclass(frozen=True)
class DemoOptions:
    accounts: int = 20
    rate: float = 20.0
    history_days: int = HISTORY_DAYS


def demo_profiles(n: int) -> list[simulator.SimProfile]:
    return simulator.make_accounts(n, prefix=f"DEMO{utc_now():%m%d%H%M}-")


async def run_demo(settings: RuntimeSettings, policy: PolicyConfig, opts: DemoOptions, stop: asyncio.Event,
                   say: Callable[[str], None]) -> None:
    """Register, seed, then live until ``stop`` (Ctrl-C while seeding stops it too)."""
    profiles = demo_profiles(opts.accounts)
    pool = await create_pool(settings.database_url, max_size=1)
    try:
        await accounts.upsert(pool, [p.account for p in profiles])
    finally:
        await pool.close()
    bank = ModelBank.opening({p.account.account_id: p.opening_usd for p in profiles},
                             {p.account.account_id: p.account.min_balance_usd for p in profiles})
    producer = kafka_clients.producer(settings.kafka_bootstrap)
    plan = seed_plan(utc_now().date(), opts.history_days, policy.TARGET_LADDER_DAYS, settings.carbon_note_tenor_days)
    async with api_client(settings, "demo-bank-connector", BANK_SCOPES) as bank_api, \
            api_client(settings, "demo-operator", OPERATOR_SCOPES) as ops_api:
        connector = BankConnector(bank, bank_api, producer)
        say(f"seeding {opts.history_days} days of history for {len(profiles)} accounts "
            f"({profiles[0].account.account_id} ...)")
        seeding = asyncio.ensure_future(seed_history(profiles, connector, ops_api, plan, progress=say))
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({seeding, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not seeding.done():
            seeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await seeding
            return
        stopped.cancel()
        try:
            say(_seeded(seeding.result(), connector, settings))
        except BankError as exc:  # the demo goes on live; what did not happen is on the screen
            log.error("demo bank: seeding stopped: %s", exc)
            say(f"seeding stopped: {exc}; going live without the rest of the past")
        feed = simulator.live(profiles, opts.rate, bank=bank)
        connector.clock = lambda: feed.now
        sent, _ = await asyncio.gather(simulator.stream(producer, feed.events(), opts.rate, stop),
                                       connector.run(stop))
        log.info("simulator stopped after %d events", sent)


def _seeded(summary: SeedSummary, connector: BankConnector, settings: RuntimeSettings) -> str:
    products = ", ".join(f"{n} {p}" for p, n in sorted(summary.orders.items()))
    due = len(connector.bank.due(utc_now().date()))
    example = next(iter(connector.bank.investments), None)
    base = f"http://{settings.serve_host}:{settings.serve_port}"
    lines = [f"history seeded in {summary.seconds:.0f} s: {summary.closes} closes, {summary.entries} operating "
             f"entries, {summary.settled} past orders SETTLED ({products}), {summary.matured} maturities booked back, "
             f"{due} due today (booked back now); live"]
    if summary.breaches:
        lines.append(f"MONEY INVARIANT BROKEN: {summary.breaches}")
    if example is not None:
        lines.append(f"one of them:  curl -H \"Authorization: Bearer $TOKEN\" {base}/sweep-intent/{example}")
    return "\n              ".join(lines)
