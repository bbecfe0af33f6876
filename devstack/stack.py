"""The local stack's lifecycle: `up`, `down`, `status` over Kafka and PostgreSQL, per stack home.

A stack home is a folder holding everything one stack writes (data, logs, config) plus
`state.json` with the ports and pids it runs on. Separate homes are separate stacks: the developer's
(`.stack/dev`) and the test suite's (`.stack/test`) never share data, ports or processes.

Every operation is idempotent and holds a lock on the home, so `up` from a terminal and from a
pytest session cannot start two brokers on one data dir.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from devstack import certs, consul, kafka, openbao, postgres, prometheus, tls_front
from devstack.certs import StackCerts
from devstack.common import (
    InfraError,
    atomic_write_text,
    choose_port,
    file_lock,
    log,
    pick_free_port,
    pids_matching,
    port_is_free,
    require_free_port,
    stop_group,
)
from treasury.settings import RuntimeSettings
from treasury.tls import kafka_security
from treasury.topics import ALL_TOPICS

REPO_ROOT = Path(__file__).resolve().parents[1]
STATE_FILE = "state.json"
LOCK_TIMEOUT_S = 300.0  # a cold `up` (Maven resolve) holds the lock for about a minute
KAFKA_RUNNING_READY_S = 30.0
PARTS = ("kafka", "postgres", "openbao")
OPTIONAL_PARTS = ("consul",)

__all__ = [
    "InfraError",
    "StackInfo",
    "default_home",
    "down",
    "kill_kafka",
    "kill_postgres",
    "main",
    "recorded_env",
    "restart_kafka",
    "restart_postgres",
    "status",
    "up",
]


@dataclass(frozen=True)
class StackInfo:
    """Where a running stack's services answer; what tests and `infra up` hand to the components."""

    kafka_bootstrap: str
    postgres_dsn: str
    home: Path
    vault_addr: str
    vault_token_file: str
    consul_http_addr: str | None = None
    tls_env: Mapping[str, str] = field(default_factory=dict)
    """With `--tls`: the client certificate settings of Kafka, Vault and Consul (StackCerts.client_env)."""

    @property
    def tls(self) -> bool:
        return bool(self.tls_env)

    def env(self) -> dict[str, str]:
        """The variables RuntimeSettings.from_env reads."""
        env = {"KAFKA_BOOTSTRAP": self.kafka_bootstrap, "DATABASE_URL": self.postgres_dsn,
               "VAULT_ADDR": self.vault_addr, "VAULT_TOKEN_FILE": self.vault_token_file, **self.tls_env}
        if self.consul_http_addr:
            env["CONSUL_HTTP_ADDR"] = self.consul_http_addr
        return env

    def settings(self, **overrides: object) -> RuntimeSettings:
        """Settings pointing at this stack (Vault-signed, JWT-authenticated), plus ``overrides``."""
        return RuntimeSettings.from_env(self.env()).model_copy(update=overrides)


@dataclass
class KafkaState:
    port: int | None = None
    controller_port: int | None = None
    pid: int | None = None


@dataclass
class PostgresState:
    port: int | None = None
    pid: int | None = None


@dataclass
class OpenBaoState:
    port: int | None = None
    pid: int | None = None


@dataclass
class ConsulState:
    port: int | None = None
    serf_lan_port: int | None = None
    serf_wan_port: int | None = None
    server_port: int | None = None
    pid: int | None = None

    def ports(self) -> tuple[int | None, ...]:
        return (self.port, self.serf_lan_port, self.serf_wan_port, self.server_port)


@dataclass
class State:
    """What state.json holds: the ports (kept across restarts) and the pids of what `up` started."""

    kafka: KafkaState = field(default_factory=KafkaState)
    postgres: PostgresState = field(default_factory=PostgresState)
    openbao: OpenBaoState = field(default_factory=OpenBaoState)
    consul: ConsulState = field(default_factory=ConsulState)
    tls: bool = False  # every part started with mutual TLS 1.3 (`up --tls`), or every part plaintext

    def ports_in_use(self) -> set[int]:
        bao_cluster = self.openbao.port + 1 if self.openbao.port is not None else None
        ports = (self.kafka.port, self.kafka.controller_port, self.postgres.port, self.openbao.port, bao_cluster,
                 *self.consul.ports())
        return {p for p in ports if p is not None}


# ------------------------------------------------------------------------------------------ home & state


def default_home(environ: Mapping[str, str] | None = None) -> Path:
    """TREASURY_STACK_HOME (of ``environ``, default the process's), else the repo's git-ignored `.stack/dev`."""
    env = os.environ if environ is None else environ
    return Path(env.get("TREASURY_STACK_HOME", str(REPO_ROOT / ".stack" / "dev")))


def _resolve(home: Path | None) -> Path:
    """An absolute home: process command lines are matched against paths inside it."""
    return (default_home() if home is None else Path(home)).expanduser().resolve()


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_state(text: str) -> State:
    """state.json's content; unknown or malformed fields are dropped, never fatal (it is a cache)."""
    try:
        raw = json.loads(text)
    except ValueError:
        return State()
    if not isinstance(raw, dict):
        return State()
    k = raw.get("kafka") if isinstance(raw.get("kafka"), dict) else {}
    p = raw.get("postgres") if isinstance(raw.get("postgres"), dict) else {}
    b = raw.get("openbao") if isinstance(raw.get("openbao"), dict) else {}
    c = raw.get("consul") if isinstance(raw.get("consul"), dict) else {}
    assert isinstance(k, dict) and isinstance(p, dict) and isinstance(b, dict) and isinstance(c, dict)
    return State(
        kafka=KafkaState(
            port=_int_or_none(k.get("port")),
            controller_port=_int_or_none(k.get("controller_port")),
            pid=_int_or_none(k.get("pid")),
        ),
        postgres=PostgresState(port=_int_or_none(p.get("port")), pid=_int_or_none(p.get("pid"))),
        openbao=OpenBaoState(port=_int_or_none(b.get("port")), pid=_int_or_none(b.get("pid"))),
        consul=ConsulState(**{name: _int_or_none(c.get(name)) for name in ConsulState.__dataclass_fields__}),
        tls=raw.get("tls") is True,
    )


def load_state(home: Path) -> State:
    try:
        return parse_state((home / STATE_FILE).read_text())
    except OSError:
        return State()


def recorded_env(home: Path | None = None) -> dict[str, str]:
    """StackInfo.env's variables for the parts state.json records, for commands run in another terminal.

    Read without the lock and without starting anything, so a CLI call costs a file read. Ports are
    kept across restarts, so a recorded address is where the part answers when it runs, and the one
    to name when it does not. Consul only while it runs: it is optional and its ports change per start.
    """
    home = _resolve(home)
    state = load_state(home)
    stack_certs = _certs(home, state)
    env: dict[str, str] = dict(stack_certs.client_env()) if stack_certs else {}
    if state.kafka.port is not None:
        env["KAFKA_BOOTSTRAP"] = kafka.bootstrap(state.kafka.port)
    if state.postgres.port is not None:
        env["DATABASE_URL"] = postgres.dsn(state.postgres.port, stack_certs)
    if state.openbao.port is not None:
        env["VAULT_ADDR"] = openbao.address(state.openbao.port, state.tls)
        env["VAULT_TOKEN_FILE"] = str(openbao.paths(home).token)
    if state.consul.port is not None and consul.is_ours(state.consul.pid, consul.paths(home)):
        env["CONSUL_HTTP_ADDR"] = consul.http_addr(state.consul.port, state.tls)
    return env


def save_state(home: Path, state: State) -> None:
    atomic_write_text(home / STATE_FILE, json.dumps(asdict(state), indent=2) + "\n")


@contextmanager
def _locked(home: Path) -> Iterator[None]:
    with file_lock(home / ".lock", what=f"stack home {home}", timeout_s=LOCK_TIMEOUT_S):
        yield


def _certs(home: Path, state: State) -> StackCerts | None:
    """The stack's certificates when it runs with TLS (made on first use), else None."""
    return certs.ensure(home) if state.tls else None


def _kafka_security(home: Path, state: State) -> dict[str, str]:
    """librdkafka's TLS settings for our own admin client (the same mapping every client uses)."""
    stack_certs = _certs(home, state)
    return kafka_security(stack_certs.client_env()) if stack_certs else {}


def tls_requested(environ: Mapping[str, str] | None = None) -> bool:
    """TREASURY_TLS=1 (or `--tls`): every part of the stack with mutual TLS 1.3."""
    env = os.environ if environ is None else environ
    return env.get("TREASURY_TLS", "").strip().lower() in {"1", "true", "yes", "on"}


def _info(home: Path, state: State) -> StackInfo:
    assert state.kafka.port is not None and state.postgres.port is not None and state.openbao.port is not None
    stack_certs = _certs(home, state)
    consul_addr = (
        consul.http_addr(state.consul.port, state.tls)
        if state.consul.port is not None and consul.is_ours(state.consul.pid, consul.paths(home))
        else None
    )
    return StackInfo(kafka.bootstrap(state.kafka.port), postgres.dsn(state.postgres.port, stack_certs), home,
                     openbao.address(state.openbao.port, state.tls), str(openbao.paths(home).token), consul_addr,
                     tls_env=stack_certs.client_env() if stack_certs else {})


def consul_enabled(environ: dict[str, str] | None = None) -> bool:
    """TREASURY_CONSUL=1 (or `--with consul`) adds the Consul agent to the stack; off by default."""
    env = os.environ if environ is None else environ
    return env.get("TREASURY_CONSUL", "").strip().lower() in {"1", "true", "yes", "on"}


# ----------------------------------------------------------------------------------------------- consul


def _start_consul(home: Path, state: State) -> None:
    """Build (once) and start a dev agent on fresh ports; dev mode keeps nothing across starts anyway."""
    binary = consul.build_or_cached()
    ports: list[int] = []
    for _ in state.consul.ports():
        ports.append(choose_port(None, avoid=state.ports_in_use() - set(state.consul.ports()) | set(ports)))
    state.consul.port, state.consul.serf_lan_port, state.consul.serf_wan_port, state.consul.server_port = ports
    stack_certs = _certs(home, state)
    state.consul.pid = consul.spawn(binary, consul.paths(home), consul.ConsulPorts(*ports), stack_certs)
    save_state(home, state)
    consul.wait_ready(ports[0], state.consul.pid, consul.paths(home), stack_certs)


def _stop_consul(home: Path, state: State) -> None:
    consul.stop(state.consul.pid, consul.paths(home))
    for pid in pids_matching("agent", f"-config-file={consul.paths(home).config}"):
        stop_group(pid, what="consul", grace_s=consul.STOP_GRACE_S)
    state.consul.pid = None
    save_state(home, state)


# ------------------------------------------------------------------------------------------------ kafka


def _stop_strays(properties: Path, what: str) -> None:
    """Stop brokers of this home that state.json no longer names (it was deleted or is stale)."""
    for pid in pids_matching("kafka.Kafka", str(properties)):
        log(f"stopping a {what} of this home not recorded in {STATE_FILE} (pid {pid})")
        stop_group(pid, what=what, grace_s=kafka.STOP_GRACE_S)


def _choose_kafka_ports(state: State) -> None:
    """Previous ports when free (a restarted broker keeps its address), new ones otherwise."""
    others = {state.postgres.port} - {None}
    previous = (state.kafka.port, state.kafka.controller_port)
    port = choose_port(state.kafka.port, avoid={p for p in others if p is not None})
    controller = choose_port(state.kafka.controller_port, avoid={p for p in (*others, port) if p is not None})
    if previous[0] is not None and previous != (port, controller):
        log(f"kafka's previous ports {previous} are taken: moving to {(port, controller)}")
    state.kafka.port, state.kafka.controller_port = port, controller


def _spawn_kafka(home: Path, state: State, *, keep_ports: bool) -> int:
    """Write config, format once, launch; the pid is saved before waiting so `down` can always stop it."""
    paths = kafka.paths(home)
    _stop_strays(paths.properties, "kafka")
    java = kafka.require_java()
    libs = kafka.resolve_libs()
    if keep_ports:
        if state.kafka.port is None or state.kafka.controller_port is None:
            raise InfraError(f"kafka never ran in {home}: run `treasury-orch infra up` first")
        require_free_port(state.kafka.port, "kafka")
        require_free_port(state.kafka.controller_port, "kafka's controller")
    else:
        _choose_kafka_ports(state)
    assert state.kafka.port is not None and state.kafka.controller_port is not None
    stack_certs = _certs(home, state)
    broker_tls = (kafka.make_keystore(paths, stack_certs.cert("kafka"), stack_certs.key("kafka"), stack_certs.ca)
                  if stack_certs else None)
    kafka.write_properties(paths, state.kafka.port, state.kafka.controller_port, broker_tls)
    kafka.format_storage(java, libs, paths)
    state.kafka.pid = kafka.spawn(java, libs, paths)
    save_state(home, state)
    return state.kafka.pid


def _await_kafka(home: Path, state: State, *, just_started: bool = True) -> None:
    """Wait for the broker (briefly when it was already running) and make sure the topics exist."""
    assert state.kafka.port is not None and state.kafka.pid is not None
    timeout_s = kafka.READY_TIMEOUT_S if just_started else KAFKA_RUNNING_READY_S
    security = _kafka_security(home, state)
    kafka.wait_ready(state.kafka.port, state.kafka.pid, kafka.paths(home), security, timeout_s,
                     announce=just_started)
    kafka.ensure_topics(kafka.bootstrap(state.kafka.port), ALL_TOPICS, security)


def _stop_kafka(home: Path, state: State) -> None:
    """Stops the recorded broker and forgets its pid (the ports stay, for the next start)."""
    kafka.stop(state.kafka.pid, kafka.paths(home))
    state.kafka.pid = None
    save_state(home, state)


# --------------------------------------------------------------------------------------------- postgres


def _start_postgres(home: Path, state: State, *, keep_port: bool) -> None:
    """Start on the recorded port (`keep_port`) or a free one; create the database when missing."""
    paths = postgres.paths(home)
    bindir = postgres.find_bindir()
    if keep_port:
        if state.postgres.port is None:
            raise InfraError(f"postgres never ran in {home}: run `treasury-orch infra up` first")
        require_free_port(state.postgres.port, "postgres")
    else:
        state.postgres.port = choose_port(state.postgres.port, avoid=state.ports_in_use() - {state.postgres.port})
    state.postgres.pid = postgres.start(bindir, paths, state.postgres.port, _certs(home, state))
    save_state(home, state)
    postgres.ensure_database(bindir, paths, state.postgres.port)


def _stop_postgres(home: Path, state: State) -> None:
    """Stops the recorded postmaster, or one postmaster.pid names when state.json lost track of it."""
    postgres.stop(postgres.highest_version_bindir(), postgres.paths(home), state.postgres.pid)
    state.postgres.pid = None
    save_state(home, state)


def _postgres_healthy(home: Path, state: State) -> bool:
    bindir = postgres.highest_version_bindir()
    return (
        bindir is not None
        and state.postgres.port is not None
        and postgres.is_ours(state.postgres.pid, postgres.paths(home))
        and postgres.answers(bindir, postgres.paths(home), state.postgres.port)
    )


# ---------------------------------------------------------------------------------------------- openbao


def _free_pair() -> int:
    """A free port whose neighbour is free too: dev mode's cluster listener takes API port + 1."""
    for _ in range(20):
        port = pick_free_port()
        if port_is_free(port + 1):
            return port
    raise InfraError("could not find two adjacent free ports for openbao; free some ports")


def _start_openbao(home: Path, state: State) -> None:
    others = state.ports_in_use() - {state.openbao.port, (state.openbao.port or -2) + 1}
    avoid = others | {p - 1 for p in others}
    state.openbao.port = choose_port(state.openbao.port, is_free=lambda p: port_is_free(p) and port_is_free(p + 1),
                                     pick=_free_pair, avoid=avoid)
    state.openbao.pid = openbao.start(openbao.paths(home), state.openbao.port, RuntimeSettings().key_names(),
                                      _certs(home, state))
    save_state(home, state)


def _stop_openbao(home: Path, state: State) -> None:
    openbao.stop(state.openbao.pid, openbao.paths(home))
    state.openbao.pid = None
    save_state(home, state)


def _openbao_healthy(home: Path, state: State) -> bool:
    return (state.openbao.port is not None and openbao.is_ours(state.openbao.pid, openbao.paths(home))
            and openbao.answers(state.openbao.port, _certs(home, state)))


# ------------------------------------------------------------------------------------------- public API


def up(home: Path | None = None, *, with_consul: bool | None = None, tls: bool | None = None) -> StackInfo:
    """Start whatever part of the stack is not running; return where the stack answers.

    A part whose recorded pid is alive is only health-checked, so a second `up` costs a few
    milliseconds and changes nothing. If a start fails, what this call started is stopped again.
    Consul is started when `with_consul` (default: TREASURY_CONSUL) asks for it. `tls` (default:
    TREASURY_TLS, else the mode the stack already runs in) starts every part with mutual TLS 1.3;
    asking for the other mode than a running stack's restarts its parts in that mode (data kept).
    """
    with_consul = consul_enabled() if with_consul is None else with_consul
    home = _resolve(home)
    home.mkdir(parents=True, exist_ok=True)
    started_at = time.monotonic()
    with _locked(home):
        state = load_state(home)
        wanted = tls if tls is not None else (tls_requested() or state.tls)
        if wanted != state.tls:
            log(f"switching the stack in {home} to {'TLS' if wanted else 'plaintext'}: restarting its parts")
            _stop_parts(home, state)
            state.tls = wanted
            save_state(home, state)
        before = (state.kafka.pid, state.postgres.pid, state.openbao.pid, state.consul.pid)
        started: list[str] = []
        try:
            kafka_running = kafka.is_ours(state.kafka.pid, kafka.paths(home))
            if not kafka_running:
                _spawn_kafka(home, state, keep_ports=False)
                started.append("kafka")
            if not _postgres_healthy(home, state):
                _stop_postgres(home, state)  # a live but unresponsive postmaster is restarted
                _start_postgres(home, state, keep_port=False)
                started.append("postgres")
            if not _openbao_healthy(home, state):
                _stop_openbao(home, state)
                _start_openbao(home, state)
                started.append("openbao")
            _await_kafka(home, state, just_started=not kafka_running)
            if with_consul and not consul.is_ours(state.consul.pid, consul.paths(home)):
                _start_consul(home, state)
                started.append("consul")
        except BaseException:
            _undo(home, state, before)
            raise
    if started:
        log(f"up in {time.monotonic() - started_at:.1f} s (started {', '.join(started)})")
    return _info(home, state)


def _undo(home: Path, state: State, before: tuple[int | None, ...]) -> None:
    """Stop what a failed `up` started (pids that differ from those found), so nothing is left behind."""
    if state.kafka.pid is not None and state.kafka.pid != before[0]:
        _stop_kafka(home, state)
    if state.postgres.pid is not None and state.postgres.pid != before[1]:
        _stop_postgres(home, state)
    if state.openbao.pid is not None and state.openbao.pid != before[2]:
        _stop_openbao(home, state)
    if state.consul.pid is not None and state.consul.pid != before[3]:
        _stop_consul(home, state)


def down(home: Path | None = None) -> None:
    """Stop the stack's processes and wait until they are gone; harmless when nothing runs.

    Data stays, so the next `up` finds its topics, offsets and tables again.
    """
    home = _resolve(home)
    if not home.is_dir():
        return
    tls_front.stop(home)  # the run command's TLS front, should a crashed run have left it
    prometheus.stop_left_running(home / "prometheus")  # and its Prometheus
    with _locked(home):
        _stop_parts(home, load_state(home))


def _stop_parts(home: Path, state: State) -> None:
    _stop_kafka(home, state)
    _stop_strays(kafka.paths(home).properties, "kafka")
    _stop_postgres(home, state)
    _stop_openbao(home, state)
    _stop_consul(home, state)


def status(home: Path | None = None) -> dict[str, dict[str, object]]:
    """Per part: whether its process runs, its address, `tls` or `plaintext`, its pid and its log file.

    Postgres's address is its DSN without the certificate parameters (``infra up`` prints the full one).
    """
    home = _resolve(home)
    state = load_state(home)
    kafka_paths, pg_paths = kafka.paths(home), postgres.paths(home)
    kafka_up = kafka.is_ours(state.kafka.pid, kafka_paths)
    pg_up = postgres.is_ours(state.postgres.pid, pg_paths)
    bao_paths = openbao.paths(home)
    bao_up = openbao.is_ours(state.openbao.pid, bao_paths)
    transport = "tls" if state.tls else "plaintext"
    parts: dict[str, dict[str, object]] = {
        "kafka": {
            "running": kafka_up,
            "address": kafka.bootstrap(state.kafka.port) if state.kafka.port else None,
            "transport": transport,
            "pid": state.kafka.pid if kafka_up else None,
            "log": str(kafka_paths.log),
        },
        "postgres": {
            "running": pg_up,
            "address": postgres.dsn(state.postgres.port) if state.postgres.port else None,
            "transport": transport,
            "pid": state.postgres.pid if pg_up else None,
            "log": str(pg_paths.log),
        },
        "openbao": {
            "running": bao_up,
            "address": openbao.address(state.openbao.port, state.tls) if state.openbao.port else None,
            "transport": transport,
            "pid": state.openbao.pid if bao_up else None,
            "log": str(bao_paths.log),
        },
    }
    if state.consul.port is not None:  # optional: shown once this home has run it
        consul_up = consul.is_ours(state.consul.pid, consul.paths(home))
        parts["consul"] = {
            "running": consul_up,
            "address": consul.http_addr(state.consul.port, state.tls),
            "transport": transport,
            "pid": state.consul.pid if consul_up else None,
            "log": str(consul.paths(home).log),
        }
    return parts


def restart_kafka(home: Path | None = None) -> str:
    """Stop (gracefully, if running) and start the broker on the same ports; returns its bootstrap.

    The same address matters: clients configured with it must find the broker again, as they
    would after a broker restart in production.
    """
    home = _resolve(home)
    with _locked(home):
        state = load_state(home)
        _stop_kafka(home, state)
        _spawn_kafka(home, state, keep_ports=True)
        _await_kafka(home, state)
        assert state.kafka.port is not None
        return kafka.bootstrap(state.kafka.port)


def kill_kafka(home: Path | None = None) -> None:
    """SIGKILL the broker (no controlled shutdown), for chaos tests; `restart_kafka` or `up` revive it."""
    home = _resolve(home)
    with _locked(home):
        state = load_state(home)
        kafka.kill(state.kafka.pid, kafka.paths(home))
        state.kafka.pid = None
        save_state(home, state)


def restart_postgres(home: Path | None = None) -> str:
    """Stop (fast, if running) and start PostgreSQL on the same port; returns its DSN."""
    home = _resolve(home)
    with _locked(home):
        state = load_state(home)
        _stop_postgres(home, state)
        _start_postgres(home, state, keep_port=True)
        assert state.postgres.port is not None
        return postgres.dsn(state.postgres.port, _certs(home, state))


def kill_postgres(home: Path | None = None) -> None:
    """SIGKILL the postmaster and its backends (a crash; recovery runs on the next start)."""
    home = _resolve(home)
    with _locked(home):
        state = load_state(home)
        postgres.kill(state.postgres.pid, postgres.paths(home))
        state.postgres.pid = None
        save_state(home, state)


# ------------------------------------------------------------------------------------------------- CLI


def _print_parts(parts: dict[str, dict[str, object]]) -> None:
    """Parts as shell comments, so `eval "$(treasury-orch infra up)"` only runs the exports."""
    for name in (*PARTS, *OPTIONAL_PARTS):
        if name not in parts:
            continue
        part = parts[name]
        state = f"running (pid {part['pid']})" if part["running"] else "stopped"
        print(f"# {name:<8} {part['address'] or '-'}  {part['transport']}  {state}  log: {part['log']}")


def main(action: str, with_parts: Sequence[str] = (), tls: bool = False) -> int:
    """`treasury-orch infra up|down|status`; exit 1 on failure (status: 1 unless all parts run)."""
    try:
        if action == "up":
            info = up(with_consul=True if "consul" in with_parts else None, tls=True if tls else None)
            _print_parts(status(info.home))
            for key, value in info.env().items():
                print(f"export {key}={shlex.quote(value)}")
            return 0
        if action == "down":
            down()
            _print_parts(status())
            return 0
        if action == "status":
            parts = status()
            _print_parts(parts)
            return 0 if all(part["running"] for part in parts.values()) else 1
    except InfraError as exc:
        print(f"treasury-orch infra {action}: {exc}", file=sys.stderr)
        return 1
    print(f"unknown action {action!r}: use up, down or status", file=sys.stderr)
    return 2
