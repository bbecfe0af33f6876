"""``treasury-orch``: the one command for operators, treasurers and quants."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, TypeAlias

from treasury.settings import ConfigError

if TYPE_CHECKING:
    import asyncpg

    from schemas.bank_formats import BankFile


def _day_count(text: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= 100_000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days from 1 to 100000")
    return int(text)


def _decimal(text: str) -> Decimal:
    from treasury.money import to_decimal

    try:
        return to_decimal(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _bps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of basis points") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: basis points must be finite and not negative")
    return value


def _instant(text: str) -> datetime:
    from treasury.clock import as_utc

    try:
        return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def _aml_tag(text: str) -> tuple[str, str]:
    """NAME=VALUE, checked against the order schema's rules for aml_tags."""
    from pydantic import TypeAdapter, ValidationError

    from schemas.sweep_order import AmlTagName, AmlTagValue

    name, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError("expected NAME=VALUE")
        return TypeAdapter(AmlTagName).validate_python(name), TypeAdapter(AmlTagValue).validate_python(value)
    except (ValueError, ValidationError) as exc:
        raise argparse.ArgumentTypeError(f"aml tag {text!r}: {str(exc).splitlines()[-1].strip()}") from None


if TYPE_CHECKING:
    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def build_parser() -> argparse.ArgumentParser:
    """One family of commands per function below: the system here, accounts and data, VaR, deployment and contracts."""
    parser = argparse.ArgumentParser(prog="treasury-orch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_local_commands(sub)
    _add_data_commands(sub)
    _add_var_commands(sub)
    _add_forecast_commands(sub)
    _add_replay_command(sub)
    _add_deploy_commands(sub)
    from serve_app.cli import security as security_cli

    security_cli.add_parsers(sub)
    return parser


def _add_local_commands(sub: Subparsers) -> None:
    run = sub.add_parser("run", help="run the whole system here (stack, Ray, actors, Serve, simulator)")
    run.add_argument("--accounts", type=int, default=20, help="simulated accounts (default 20)")
    run.add_argument("--rate", type=float, default=20.0, help="simulated events per second (default 20)")
    run.add_argument("--no-simulator", action="store_true", help="do not start the feed simulator")
    run.add_argument("--no-bank", action="store_true",
                     help="no demo bank: no seeded history, nobody executes the orders (docs/demo.md)")
    run.add_argument("--keep-stack", action="store_true", help="leave Kafka and Postgres running on exit")
    run.add_argument("--no-prometheus", action="store_true", help="do not start the Prometheus server")
    run.add_argument("--with", dest="with_parts", action="append", default=[], choices=["consul"],
                     help="also start Consul and follow live configuration (or set TREASURY_CONSUL=1)")
    run.add_argument("--tls", action="store_true",
                     help="mutual TLS 1.3 on every hop: stack, Ray and the REST front (or TREASURY_TLS=1)")
    run.set_defaults(handler=_run)

    infra = sub.add_parser("infra", help="start, stop or inspect the local Kafka and Postgres")
    infra.add_argument("action", choices=["up", "down", "status"])
    infra.add_argument("--with", dest="with_parts", action="append", default=[], choices=["consul"],
                       help="also start an optional part (consul; or set TREASURY_CONSUL=1)")
    infra.add_argument("--tls", action="store_true",
                       help="up: every part with mutual TLS 1.3 and the stack's own CA (or TREASURY_TLS=1)")
    infra.set_defaults(handler=_infra)

    decide = sub.add_parser("decide", help="what-if: evaluate the sweep policy with the active configuration "
                            "(and BUSINESS_CALENDAR: the cut-off and the days it moved past are shown)")
    decide.add_argument("--available", type=_decimal, required=True, metavar="USD")
    decide.add_argument("--projection", type=_decimal, required=True, metavar="USD", help="24 h outflows")
    decide.add_argument("--var-bps", type=_bps, required=True, metavar="N")
    decide.add_argument("--pending", type=_decimal, default=Decimal(0), metavar="USD")
    decide.add_argument("--min-balance", type=_decimal, default=Decimal(0), metavar="USD")
    decide.add_argument("--esg", action="store_true")
    decide.add_argument("--now", type=_instant, default=None, metavar="ISO-8601")
    decide.set_defaults(handler=_decide)


def _add_data_commands(sub: Subparsers) -> None:
    acct = sub.add_parser("accounts", help="register or list the accounts the orchestrator may sweep")
    acct_sub = acct.add_subparsers(dest="action", required=True)
    add = acct_sub.add_parser("add")
    add.add_argument("account_id")
    add.add_argument("--esg", action="store_true")
    add.add_argument("--min-balance", type=_decimal, default=Decimal(0), metavar="USD")
    add.add_argument("--aml-tag", type=_aml_tag, action="append", default=[], metavar="NAME=VALUE",
                     help="BSA/AML tag copied into every order of the account (repeatable)")
    acct_sub.add_parser("list")
    acct.set_defaults(handler=_accounts)

    ingest = sub.add_parser("ingest", help="feed camt.052/053/054 or Finastra/native JSON files into balance_events")
    ingest.add_argument("files", nargs="+", metavar="FILE")
    ingest.add_argument("--dry-run", action="store_true", help="print the events it would send, send nothing")
    ingest.set_defaults(handler=_ingest)

    sim = sub.add_parser("simulate", help="stream simulated balance events into balance_events")
    sim.add_argument("--accounts", type=int, default=20)
    sim.add_argument("--rate", type=float, default=20.0)
    sim.add_argument("--count", type=int, default=1000)
    sim.set_defaults(handler=_simulate)


def _add_var_commands(sub: Subparsers) -> None:
    var = sub.add_parser("var", help="historical VaR for quants")
    var_sub = var.add_subparsers(dest="action", required=True)
    compute = var_sub.add_parser("compute", help="VaR and ES per account from a long-form CSV/Parquet file")
    compute.add_argument("file", help="columns account_id, date, net_flow_usd")
    compute.add_argument("--confidence", type=float, default=0.99)
    compute.add_argument("--window", type=int, default=250)
    recompute = var_sub.add_parser("recompute", help="recompute VaR on the Ray pool, store it, push it to the shards")
    recompute.add_argument("--accounts", nargs="*", default=None, metavar="ID", help="default: all")
    recompute.add_argument("--window", type=int, default=250)
    recompute.add_argument("--confidence", type=float, default=0.99)
    recompute.add_argument("--source", default="postgres", help="'postgres' (ledger closes) or a Parquet/CSV file")
    recompute.add_argument("--workers", type=int, default=2, help="VaR actors in the pool")
    recompute.add_argument("--shards", type=int, default=None, help="push to this many running shards (SHARDS)")
    backtest = var_sub.add_parser("backtest", help="Kupiec, Christoffersen and the Basel traffic light")
    backtest.add_argument("file", help="columns account_id, date, net_flow_usd")
    backtest.add_argument("--confidence", type=float, default=0.99)
    backtest.add_argument("--window", type=int, default=250)
    backtest.add_argument("--account", default=None, help="required when the file holds several accounts")
    backtest.add_argument("--png", default=None, help="write a plot of flows against VaR here")
    flows = var_sub.add_parser("flows", help="an account's daily flows from the ledger: close change, our own "
                                             "transfers, and the operating flow VaR is of (one JSON line per day)")
    flows.add_argument("--account", required=True, help="a registered account")
    flows.add_argument("--days", type=_day_count, metavar="N", default=30,
                       help="the last N days with a close, 1 to 100000 (default 30)")
    var.set_defaults(handler=_var)


def _add_forecast_commands(sub: Subparsers) -> None:
    forecast = sub.add_parser("forecast", help="next business day's outflows per account (docs/decisions.md)")
    forecast_sub = forecast.add_subparsers(dest="action", required=True)
    compute = forecast_sub.add_parser("compute", help="each account's forecast for a day from a long-form file")
    compute.add_argument("file", help="CSV or Parquet, columns account_id, date, outflow_usd (gross outflows)")
    compute.add_argument("--for-date", type=_iso_date, required=True, metavar="YYYY-MM-DD",
                         help="the day forecast; only rows dated before it are used")
    backtest = forecast_sub.add_parser("backtest", help="each day's forecast made the day before against what "
                                                        "went out: coverage, mean absolute error, worst shortfalls")
    backtest.add_argument("file", help="CSV or Parquet, columns account_id, date, outflow_usd (gross outflows)")
    backtest.add_argument("--account", default=None, help="required when the file holds several accounts")
    backtest.add_argument("--png", default=None, help="write a plot of outflows against the forecast here")
    forecast.set_defaults(handler=_forecast)


def _add_replay_command(sub: Subparsers) -> None:
    replay = sub.add_parser("replay", help="replay the ledger's balances and entries through the live decision "
                                           "code, with the live or a changed policy (docs/decisions.md)")
    replay.add_argument("--from", dest="start", type=_iso_date, required=True, metavar="YYYY-MM-DD",
                        help="first as-of date replayed")
    replay.add_argument("--to", dest="end", type=_iso_date, required=True, metavar="YYYY-MM-DD",
                        help="last as-of date replayed (included)")
    replay.add_argument("--accounts", nargs="+", default=None, metavar="ID", help="default: every account")
    replay.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="a policy key changed from the live configuration (repeatable)")
    replay.add_argument("--grid", action="append", default=[], metavar="KEY=v1,v2,...",
                        help="one policy per value, each a Ray task (repeatable: the grids multiply)")
    replay.add_argument("--rates", default=None, metavar="FED_RRP=4.3,TBILL_4W=4.2,CARBON_NOTE=3.9",
                        help="yearly rates in percent for the yield (act/360); a product not named earns 0")
    replay.add_argument("--png", default=None, metavar="PATH", help="write a plot comparing the policies here")
    replay.set_defaults(handler=_replay)


def _replay(args: argparse.Namespace) -> int:
    """One JSON object: the period, the rates and, per policy, its figures and each account's
    (actors.replay). A grid runs its policies as Ray tasks (RAY_ADDRESS, or a local Ray)."""
    import ray

    from actors.replay import parse_grid, parse_rates, parse_sets, variants
    from actors.replay_job import ReplaySpec, run, summary
    from actors.settlement import Terms
    from serve_app.cli.stack_fallback import open_pool, ray_part, resolve, unreachable
    from treasury.actor_names import NAMESPACE
    from treasury.progress import text_progress
    from treasury.settings import policy_from_env

    if args.end < args.start:
        raise ConfigError(f"--to {args.end} is before --from {args.start}")
    policies = variants(policy_from_env(), parse_sets(args.sets), parse_grid(args.grid))
    where = resolve()
    spec = ReplaySpec(args.start, args.end, args.accounts, policies, parse_rates(args.rates),
                      Terms(carbon_note_tenor_days=where.settings.carbon_note_tenor_days))
    on_ray = len(spec.variants) > 1
    if on_ray:
        try:
            ray.init(namespace=NAMESPACE, log_to_driver=False, include_dashboard=False)
        except ConnectionError as exc:  # RAY_ADDRESS names a cluster that does not answer
            raise unreachable(ray_part(where.environ), where, exc) from exc

    async def go() -> int:
        pool = await open_pool(where, max_size=2)
        try:
            results = await run(pool, spec, on_ray=on_ray, progress=text_progress(sys.stderr, "replay", "policies"),
                                png=args.png)
        finally:
            await pool.close()
        print(json.dumps(summary(results, spec)))
        return 0

    try:
        return asyncio.run(go())
    finally:
        if on_ray:
            ray.shutdown()


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _forecast(args: argparse.Namespace) -> int:
    """The estimator the VaR recompute runs for every account (risk.forecast), on a file."""
    from risk.forecast import run_backtest_cli, run_compute_cli
    from treasury.settings import business_calendar_from_env, policy_from_env

    calendar = business_calendar_from_env()
    if args.action == "compute":
        return run_compute_cli(args.file, args.for_date, calendar)
    return run_backtest_cli(args.file, args.account, args.png, calendar, float(policy_from_env().LIQ_BUFFER_PCT))


def _add_deploy_commands(sub: Subparsers) -> None:
    dep = sub.add_parser("deploy", help="deployment files, and the system on an existing Ray cluster (RAY_ADDRESS)")
    dep_sub = dep.add_subparsers(dest="action", required=True)
    cfg = dep_sub.add_parser("serve-config", help="the `serve deploy` config generated from the code (stdout)")
    lock = dep_sub.add_parser("lock", help="the pinned runtime dependencies (deploy/requirements.lock) (stdout)")
    for p in (cfg, lock):
        mode = p.add_mutually_exclusive_group()
        mode.add_argument("--write", action="store_true", help="write the checked-in file(s) under --root")
        mode.add_argument("--check", action="store_true", help="exit 1 when the checked-in file(s) differ")
        p.add_argument("--root", default=".", help="the repository root (default: the current directory)")
    for name, text in (("up", "start the actors and deploy the app, or find them running"),
                       ("down", "delete the app and stop the actors")):
        p = dep_sub.add_parser(name, help=text)
        p.add_argument("--address", default=None, help="the cluster's address (default: RAY_ADDRESS)")
    dep_sub.choices["up"].add_argument("--actors-only", action="store_true",
                                       help="leave the Serve app to `serve deploy` / KubeRay's serveConfigV2")
    dep.set_defaults(handler=_deploy)
    schemas = sub.add_parser("schemas", help="regenerate or check the checked-in JSON Schema files")
    schemas.add_argument("action", choices=["generate", "check"])
    schemas.set_defaults(handler=_schemas)


def _without_devstack(command: str, exc: ModuleNotFoundError) -> int:
    """``run`` and ``infra`` start the local stack, which an installed wheel or image does not carry."""
    if (exc.name or "").partition(".")[0] != "devstack":
        raise exc
    print(f"treasury-orch {command}: the local stack (devstack/) is development tooling and not part of this "
          "installation; run this command from a checkout after `bash scripts/bootstrap.sh`, or point "
          "KAFKA_BOOTSTRAP, DATABASE_URL and VAULT_ADDR at running services and use `deploy up`", file=sys.stderr)
    return 2


def _run(args: argparse.Namespace) -> int:
    try:
        import os

        from devstack import certs, stack

        if args.tls or stack.tls_requested():  # Ray's TLS switches, before anything of Ray is loaded
            os.environ.update(certs.ensure(stack.default_home()).ray_env())
        from serve_app.job.main_job import RunOptions, run
    except ModuleNotFoundError as exc:
        return _without_devstack("run", exc)

    consul = True if "consul" in args.with_parts else None
    return run(RunOptions(args.accounts, args.rate, not args.no_simulator, args.keep_stack, not args.no_prometheus,
                          consul, bank=not args.no_bank, tls=True if args.tls else None))


def _infra(args: argparse.Namespace) -> int:
    try:
        from devstack import stack
    except ModuleNotFoundError as exc:
        return _without_devstack("infra", exc)

    return stack.main(args.action, args.with_parts, tls=args.tls)


def _decide(args: argparse.Namespace) -> int:
    from actors.account_state import AccountState, decision_inputs
    from actors.policy import decide
    from storage.accounts import Account
    from treasury.clock import iso_z, skipped_days, utc_now
    from treasury.money import fmt
    from treasury.settings import business_calendar_from_env, policy_from_env

    config = policy_from_env()
    calendar = business_calendar_from_env()  # the one decide() uses: BUSINESS_CALENDAR, validated
    now = args.now or utc_now()
    # The what-if account, through the same assembly of inputs as a shard's; VaR is given in bps.
    what_if = AccountState(Account("what-if", esg_pref=args.esg, min_balance_usd=args.min_balance),
                           available_usd=args.available, last_projection_usd=args.projection)
    d = decide(
        decision_inputs(what_if, None, pending_sweeps_usd=args.pending, now=now, var_bps=args.var_bps),
        config,
    )
    print(json.dumps({
        "order": d.order,
        "product": d.product.value if d.product else None,
        "amount_usd": fmt(d.amount_usd),
        "cutoff_utc": iso_z(d.cutoff_utc),
        # which days count, and the days the cut-off moved past ("2026-12-25 Christmas Day")
        "business_calendar": calendar.name,
        "cutoff_skipped": [f"{day} {why}" for day, why in skipped_days(now, config.cutoff_times(), calendar)],
        "reason": d.reason.value,
        "explanation": d.explanation,
    }))
    return 0


def _accounts(args: argparse.Namespace) -> int:
    from serve_app.cli.stack_fallback import open_pool, resolve
    from storage import accounts

    where = resolve()

    async def go() -> int:
        pool = await open_pool(where, max_size=1)
        try:
            if args.action == "add":
                await accounts.upsert(pool, [accounts.Account(args.account_id, args.esg, args.min_balance,
                                                              dict(args.aml_tag))])
            for a in await accounts.list_all(pool):
                print(json.dumps({"account_id": a.account_id, "esg": a.esg_pref,
                                  "min_balance_usd": str(a.min_balance_usd), "aml_tags": a.aml_tags}))
        finally:
            await pool.close()
        return 0

    return asyncio.run(go())


def _ingest(args: argparse.Namespace) -> int:
    """All files are parsed and checked before anything is sent: one bad file sends nothing.

    Files are read incrementally (memory stays flat however many entries a statement carries: a
    camt file's entries are built one at a time as they are printed or sent). Each file's statement
    entries go before its balances (``serve_app.ingest.in_send_order``), and ``--dry-run`` prints
    them in that order: one line per entry (``"record": "entry"``), then one per balance. A valid
    file with neither balance nor entry (an empty camt.054) is named on stderr and sends nothing.
    """
    from schemas.bank_formats import read_bank_file
    from schemas.errors import MessageRejected
    from serve_app.ingest import dry_run_line, entry_dry_run_line

    files: list[BankFile] = []
    for name in args.files:
        try:
            with open(name, "rb") as source:
                parsed = read_bank_file(source, None)
        except OSError as exc:
            print(f"treasury-orch ingest: {name}: {exc.strerror}", file=sys.stderr)
            return 2
        except MessageRejected as exc:
            print(f"treasury-orch ingest: {name}: refused: {exc.field}: {exc.reason}", file=sys.stderr)
            return 2
        if parsed.note is not None:
            print(f"treasury-orch ingest: {name}: {parsed.note}", file=sys.stderr)
        files.append(parsed)
    if args.dry_run:
        for parsed in files:
            for entry in parsed.statement_entries:
                print(json.dumps(entry_dry_run_line(entry)))
            for event in parsed.events:
                print(json.dumps(dry_run_line(event)))
        return 0
    if not any(f.events or f.statement_entries for f in files):
        print(json.dumps({"sent": 0, "undelivered": 0, "entries": 0, "balances": 0}))
        return 0
    return asyncio.run(_send(files))


async def _send(files: list[BankFile]) -> int:
    from actors import kafka_clients
    from schemas.errors import MessageRejected
    from serve_app.cli.stack_fallback import open_pool, require_kafka, resolve
    from serve_app.ingest import booked_in_time, check_ingestible, in_send_order
    from storage import accounts
    from treasury.clock import utc_now
    from treasury.topics import BALANCE_EVENTS

    where = resolve()
    settings = where.settings
    wanted = {e.account_id for f in files for e in f.events}
    wanted |= {e.account_id for f in files for e in f.statement_entries}
    pool = await open_pool(where, max_size=1)
    try:
        known = await accounts.get_many(pool, sorted(wanted))
    finally:
        await pool.close()
    try:
        for parsed in files:
            check_ingestible(parsed.statement_entries, known)
            check_ingestible(parsed.events, known)
            booked_in_time(parsed.statement_entries, utc_now(), settings.max_clock_skew_s)
    except MessageRejected as exc:
        print(f"treasury-orch ingest: refused, nothing sent: {exc.field}: {exc.reason}", file=sys.stderr)
        return 2
    require_kafka(where)
    producer = kafka_clients.producer(settings.kafka_bootstrap)
    # Records as POST /balances encodes them (schemas.balance_record): each file's entries, then its balances.
    for parsed in files:
        for record in in_send_order(parsed.events, parsed.statement_entries):
            kafka_clients.produce_waiting(producer, BALANCE_EVENTS.name, record.key, record.value,
                                          headers=record.headers)
    undelivered = producer.flush(60)
    events = sum(len(f.events) for f in files)
    entries = sum(len(f.statement_entries) for f in files)
    # "sent" counts the records delivered, entries and balances alike (a file of balances: as before)
    print(json.dumps({"sent": events + entries - undelivered, "undelivered": undelivered,
                      "entries": entries, "balances": events}))
    return 1 if undelivered else 0


def _simulate(args: argparse.Namespace) -> int:
    from serve_app.cli.stack_fallback import reaching_postgres, require_kafka, resolve
    from serve_app.job.main_job import feed

    where = resolve()
    require_kafka(where)
    with reaching_postgres(where):  # feed registers the simulated accounts first
        sent = asyncio.run(feed(where.settings, args.accounts, args.rate, asyncio.Event(), args.count))
    print(json.dumps({"sent": sent}))
    return 0


def _var(args: argparse.Namespace) -> int:
    if args.action == "recompute":
        return _var_recompute(args)
    if args.action == "flows":
        return _var_flows(args)
    if args.action == "compute":
        from risk.compute import run_compute_cli

        return run_compute_cli(args.file, args.confidence, args.window)
    from risk.backtest import run_backtest_cli

    return run_backtest_cli(args.file, args.confidence, args.window, args.account, args.png)


def _var_flows(args: argparse.Namespace) -> int:
    """What VaR is computed on, day by day (storage.history): the close-to-close change, our own
    transfers booked in it (sweeps out, maturities in) and the operating flow left."""
    from serve_app.cli.stack_fallback import open_pool, resolve
    from storage.history import account_flows
    from treasury.money import fmt

    async def go() -> list[asyncpg.Record]:
        pool = await open_pool(resolve(), max_size=1)
        try:
            return await account_flows(pool, args.account, args.days)
        finally:
            await pool.close()

    rows = asyncio.run(go())
    if not rows:
        print(f"treasury-orch: account {args.account!r} has fewer than two closing balances (CLBD) in the ledger",
              file=sys.stderr)
        return 1
    for r in rows:
        print(json.dumps({"date": r["day"].isoformat(), "close_change_usd": fmt(r["change"]),
                          "own_transfers_usd": fmt(r["own"]), "operating_flow_usd": fmt(r["operating"])}))
    return 0


def _var_recompute(args: argparse.Namespace) -> int:
    """Runs on the Ray cluster in RAY_ADDRESS (or a local one); pushes to shards when they run."""
    import ray

    from actors.var_job import recompute
    from serve_app.cli.stack_fallback import open_pool, ray_part, resolve, unreachable
    from treasury.actor_names import NAMESPACE, shard_name
    from treasury.progress import text_progress

    where = resolve()
    settings = where.settings
    try:
        ray.init(namespace=NAMESPACE, log_to_driver=False, include_dashboard=False)
    except ConnectionError as exc:  # RAY_ADDRESS names a cluster that does not answer
        raise unreachable(ray_part(where.environ), where, exc) from exc
    shards = settings.shards if args.shards is None else args.shards
    try:
        ray.get_actor(shard_name(0), namespace=NAMESPACE)
    except ValueError:
        shards = 0  # no running system: results go to the ledger, shards read them when they start

    async def go() -> int:
        pool = await open_pool(where, max_size=2)
        try:
            summary = await recompute(pool, source=args.source, window=args.window, confidence=args.confidence,
                                      accounts=args.accounts, workers=args.workers, shards=shards,
                                      progress=text_progress(sys.stderr, "VaR recompute", "accounts"))
        finally:
            await pool.close()
        print(json.dumps(summary.as_dict()))
        return 0

    try:
        return asyncio.run(go())
    finally:
        ray.shutdown()


def _deploy(args: argparse.Namespace) -> int:
    from pathlib import Path

    from serve_app.cli import artifacts

    root = Path(args.root) if hasattr(args, "root") else Path.cwd()
    if args.action == "serve-config":
        files = artifacts.generated(root)
        if args.write:
            for path in artifacts.write(files):
                print(path)
            return 0
        if args.check:
            stale = artifacts.stale(root)
            for path in stale:
                print(f"{path} differs from the code: run `treasury-orch deploy serve-config --write`")
            return 1 if stale else 0
        print(files[0].text, end="")
        return 0
    if args.action == "lock":
        lock = artifacts.Artefact(root / artifacts.LOCK, artifacts.render_lock(artifacts.runtime_pins()))
        if args.write:
            print(artifacts.write([lock])[0])
        elif args.check:
            current = lock.path.read_text() if lock.path.exists() else ""
            if current != lock.text:
                print(f"{lock.path} differs from this venv: run `treasury-orch deploy lock --write`")
                return 1
        else:
            print(lock.text, end="")
        return 0
    return _deploy_cluster(args)


def _deploy_cluster(args: argparse.Namespace) -> int:
    import os

    from serve_app.job import cluster
    from treasury.logs import configure_logging
    from treasury.settings import RuntimeSettings, policy_from_env

    address = args.address or os.environ.get("RAY_ADDRESS")
    if not address:
        print("treasury-orch deploy: no cluster: set RAY_ADDRESS or pass --address", file=sys.stderr)
        return 2
    configure_logging()
    if args.action == "up":
        result = cluster.up(address, RuntimeSettings.from_env(), policy_from_env(), app=not args.actors_only)
    else:
        result = cluster.down(address)
    print(json.dumps(result))
    return 0


def _schemas(args: argparse.Namespace) -> int:
    from schemas import catalog

    if args.action == "generate":
        for path in catalog.write_all():
            print(path)
        return 0
    stale = catalog.stale()
    for name in stale:
        print(f"schemas/{name}.schema.json differs from its model: run `treasury-orch schemas generate`")
    return 1 if stale else 0


def main(argv: Sequence[str] | None = None) -> int:
    from serve_app.cli.stack_fallback import Unreachable

    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(f"treasury-orch: configuration error: {exc}", file=sys.stderr)
        return 2
    except Unreachable as exc:  # a part of the system did not answer: one line, not a traceback
        print(f"treasury-orch {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
