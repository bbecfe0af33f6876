"""A private PostgreSQL server for development and tests: Debian's binaries, our own data dir.

Why not the system cluster: it listens on a fixed port, is shared by everything on the machine and
is started by an init system these machines do not run. A cluster of our own under the stack home
is created in ≈ 1 s, listens on a port we choose (loopback only), and disappears with its folder.

As root, the server must not run as root (postgres refuses), so initdb/pg_ctl run through
`runuser -u postgres --` on a data dir owned by postgres. As anyone else they run directly.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from devstack.certs import APP, StackCerts
from devstack.common import (
    LOOPBACK,
    InfraError,
    kill_tree,
    log,
    pid_alive,
    pid_matches,
    run_checked,
    stop_group,
    tail,
)

PG_ROOT = Path("/usr/lib/postgresql")
SUPERUSER = "treasury"
DATABASE = "treasury"
SERVICE_USER = "postgres"
CONF_NAME = "treasury.conf"
HBA_NAME = "treasury_hba.conf"
IDENT_NAME = "treasury_ident.conf"
IDENT_MAP = "treasury"
INCLUDE_LINE = f"include '{CONF_NAME}'"
# sockaddr_un.sun_path is 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30


@dataclass(frozen=True)
class PgPaths:
    """Where one stack's server keeps its cluster, socket and log (all under `<home>/postgres`)."""

    root: Path
    data: Path
    sockets: Path
    log: Path


def paths(home: Path) -> PgPaths:
    root = home / "postgres"
    return PgPaths(root=root, data=root / "data", sockets=root / "sockets", log=root / "postgres.log")


def dsn(port: int, certs: StackCerts | None = None) -> str:
    """Where clients connect; with ``certs``, over TLS 1.3 only, checking the server's name against the
    stack's CA and presenting ``treasury-app`` (libpq's and asyncpg's own DSN parameters)."""
    base = f"postgresql://{SUPERUSER}@{LOOPBACK}:{port}/{DATABASE}"
    if certs is None:
        return base
    query = {"sslmode": "verify-full", "sslrootcert": str(certs.ca), "sslcert": str(certs.cert(APP)),
             "sslkey": str(certs.key(APP)), "ssl_min_protocol_version": "TLSv1.3"}
    return f"{base}?{urlencode(query)}"


# ------------------------------------------------------------------------------------------- binaries


def highest_version_bindir(pg_root: Path = PG_ROOT) -> Path | None:
    """The bin dir of the newest major version installed Debian-style (/usr/lib/postgresql/<N>/bin)."""
    if not pg_root.is_dir():
        return None
    versions = [d for d in pg_root.iterdir() if re.fullmatch(r"\d+(\.\d+)?", d.name) and (d / "bin/pg_ctl").is_file()]
    if not versions:
        return None
    newest = max(versions, key=lambda d: tuple(int(part) for part in d.name.split(".")))
    return newest / "bin"


def missing_binaries_message(pg_root: Path = PG_ROOT) -> str:
    return (
        f"PostgreSQL server binaries not found under {pg_root}: "
        "run `sudo apt-get install -y postgresql` (or run `treasury-orch infra up` as root to install them)"
    )


def find_bindir() -> Path:
    """The server binaries, installing Debian's postgresql when missing and we are root."""
    found = highest_version_bindir()
    if found is not None:
        return found
    if os.geteuid() != 0:
        raise InfraError(missing_binaries_message())
    log("PostgreSQL not installed: running `apt-get update && apt-get install -y postgresql` (≈ 1 min)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run_checked(["apt-get", "update"], what="apt-get update", timeout_s=600, env=env)
    run_checked(["apt-get", "install", "-y", "postgresql"], what="apt-get install postgresql", timeout_s=900, env=env)
    found = highest_version_bindir()
    if found is None:
        raise InfraError(missing_binaries_message())
    return found


# ----------------------------------------------------------------------------------------------- config


def _quote(value: str) -> str:
    """A postgresql.conf string literal (single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def render_conf(port: int, socket_dir: Path, data_dir: Path, tls: bool = False) -> str:
    """Our settings, included from postgresql.conf and rewritten on every start (the port may move).

    Loopback only, and the unix socket in the stack home rather than /var/run/postgresql, which
    belongs to the system cluster and may not exist. With ``tls``: TLS 1.3 only, with the server's
    certificate and the CA client certificates must come from (``render_hba`` then refuses the rest),
    and the unix socket (which our own tools use) closed to other users.
    """
    settings = {
        "listen_addresses": _quote(LOOPBACK),
        "port": str(port),
        "unix_socket_directories": _quote(str(socket_dir)),
        "logging_collector": "off",
        "log_min_messages": "warning",
        "hba_file": _quote(str(data_dir / HBA_NAME)),
        "ident_file": _quote(str(data_dir / IDENT_NAME)),
    }
    if tls:
        settings |= {
            "ssl": "on",
            "ssl_cert_file": _quote(str(data_dir / "server.crt")),
            "ssl_key_file": _quote(str(data_dir / "server.key")),
            "ssl_ca_file": _quote(str(data_dir / "root.crt")),
            "ssl_min_protocol_version": _quote("TLSv1.3"),
            "unix_socket_permissions": "0700",
        }
    lines = ["# Written by devstack/postgres.py on every start; edits here are overwritten."]
    lines += [f"{key} = {value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def render_hba(tls: bool) -> str:
    """Who may connect how. The unix socket (in the stack home) trusts local tools either way; over TCP,
    plaintext trusts loopback, and TLS accepts only ``hostssl`` with a client certificate (``cert``),
    whose name the ident map turns into the database user: a plaintext or certificate-less client
    finds no line and is refused."""
    method = ("hostssl", f"cert map={IDENT_MAP}") if tls else ("host", "trust")
    lines = ["# Written by devstack/postgres.py on every start; edits here are overwritten.",
             "local all all trust",
             f"{method[0]} all all 127.0.0.1/32 {method[1]}",
             f"{method[0]} all all ::1/128 {method[1]}"]
    return "\n".join(lines) + "\n"


def render_ident() -> str:
    """The client certificate's CN our components present, mapped to the one database user."""
    return f"# Written by devstack/postgres.py.\n{IDENT_MAP} {APP} {SUPERUSER}\n"


def socket_path_too_long(socket_dir: Path, port: int) -> bool:
    """True when the unix socket path would not fit in sockaddr_un (the server would refuse to start)."""
    return len(str(socket_dir / f".s.PGSQL.{port}").encode()) > MAX_SOCKET_PATH


# --------------------------------------------------------------------------------------- running as who


def _as_root() -> bool:
    return os.geteuid() == 0


def _as_service_user(argv: list[str]) -> list[str]:
    """`argv` run as the postgres user through runuser (util-linux, present on every Debian)."""
    runuser = shutil.which("runuser")
    if runuser is None:
        raise InfraError("runuser not found: install util-linux, or run `infra up` as a non-root user")
    return [runuser, "-u", SERVICE_USER, "--", *argv]


def _server_argv(argv: list[str]) -> list[str]:
    """Prefix with runuser when root: postgres refuses to run as root."""
    return _as_service_user(argv) if _as_root() else argv


def _clean_env() -> dict[str, str]:
    """The environment minus PG* variables, so a caller's PGHOST/PGPORT cannot redirect our tools."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _prepare_dirs(pg_paths: PgPaths) -> None:
    """Create our folders; as root hand them to postgres and check postgres can reach them at all."""
    pg_paths.root.mkdir(parents=True, exist_ok=True)
    pg_paths.sockets.mkdir(exist_ok=True)
    pg_paths.log.touch(exist_ok=True)
    if not _as_root():
        return
    try:
        owner = pwd.getpwnam(SERVICE_USER)
    except KeyError as exc:
        raise InfraError(f"user {SERVICE_USER} missing: reinstall Debian's postgresql-common") from exc
    # The data dir itself is created by initdb running as postgres, so it is postgres's already.
    for path in (pg_paths.root, pg_paths.sockets, pg_paths.log):
        os.chown(path, owner.pw_uid, owner.pw_gid)
    reachable = subprocess.run(_as_service_user(["test", "-w", str(pg_paths.root)]), check=False)  # noqa: S603
    if reachable.returncode != 0:
        raise InfraError(
            f"user {SERVICE_USER} cannot reach {pg_paths.root}: a parent folder lacks o+x; "
            "put the stack home under a folder others may traverse (e.g. the repo's .stack/)"
        )


# -------------------------------------------------------------------------------------------- lifecycle


def initdb(bindir: Path, pg_paths: PgPaths) -> None:
    """Create the cluster once, with `treasury` as superuser and trust auth (loopback-only server)."""
    if (pg_paths.data / "PG_VERSION").is_file():
        return
    if pg_paths.data.exists() and any(pg_paths.data.iterdir()):
        raise InfraError(f"{pg_paths.data} is not empty but holds no cluster; remove it and run `up` again")
    log(f"initdb {pg_paths.data}")
    started = time.monotonic()
    argv = [str(bindir / "initdb"), "-D", str(pg_paths.data), "-A", "trust", "-U", SUPERUSER]
    argv += ["--encoding", "UTF8", "--no-locale"]
    run_checked(_server_argv(argv), what="initdb", timeout_s=120, cwd=pg_paths.root, env=_clean_env())
    conf = pg_paths.data / "postgresql.conf"
    with open(conf, "a") as handle:
        handle.write(f"\n# Settings of the treasury local stack\n{INCLUDE_LINE}\n")
    log(f"initdb done in {time.monotonic() - started:.1f} s")


def write_conf(pg_paths: PgPaths, port: int, certs: StackCerts | None = None) -> None:
    if socket_path_too_long(pg_paths.sockets, port):
        raise InfraError(
            f"unix socket path under {pg_paths.sockets} exceeds {MAX_SOCKET_PATH} bytes; use a shorter stack home"
        )
    files = {CONF_NAME: render_conf(port, pg_paths.sockets, pg_paths.data, tls=certs is not None),
             HBA_NAME: render_hba(certs is not None), IDENT_NAME: render_ident()}
    if certs is not None:  # the server's copies: postgres refuses a key that others (or root alone) may read
        files |= {"server.crt": certs.cert("postgres").read_text(), "server.key": certs.key("postgres").read_text(),
                  "root.crt": certs.ca.read_text()}
    owner = pwd.getpwnam(SERVICE_USER) if _as_root() else None
    for name, text in files.items():
        target = pg_paths.data / name
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(target, 0o600)
        if owner is not None:
            os.chown(target, owner.pw_uid, owner.pw_gid)


def postmaster_pid(pg_paths: PgPaths) -> int | None:
    """The pid on the first line of postmaster.pid (None when absent or unreadable)."""
    try:
        first = (pg_paths.data / "postmaster.pid").read_text().splitlines()[0]
        return int(first.strip())
    except (OSError, IndexError, ValueError):
        return None


def is_ours(pid: int | None, pg_paths: PgPaths) -> bool:
    """True when `pid` is a live postmaster serving this home's data dir (pg_ctl passes -D <data>)."""
    return pid_matches(pid, str(pg_paths.data))


def remove_stale_locks(pg_paths: PgPaths) -> None:
    """Delete postmaster.pid and socket lock files left by a postmaster that no longer runs.

    After a SIGKILL they stay behind, and postgres refuses to start while the pid they name exists,
    which includes the dead postmaster's zombie until init reaps it.
    """
    pid = postmaster_pid(pg_paths)
    if pid is None or is_ours(pid, pg_paths):
        return
    log(f"removing stale lock files of postmaster {pid} (it no longer runs)")
    (pg_paths.data / "postmaster.pid").unlink(missing_ok=True)
    for lock in pg_paths.sockets.glob(".s.PGSQL.*"):
        lock.unlink(missing_ok=True)


def start(bindir: Path, pg_paths: PgPaths, port: int, certs: StackCerts | None = None) -> int:
    """Initialise when needed, start with `pg_ctl -w`, and return the postmaster's pid."""
    _prepare_dirs(pg_paths)
    initdb(bindir, pg_paths)
    write_conf(pg_paths, port, certs)
    remove_stale_locks(pg_paths)
    started = time.monotonic()
    argv = [str(bindir / "pg_ctl"), "-D", str(pg_paths.data), "-l", str(pg_paths.log), "-w"]
    argv += ["-t", str(START_TIMEOUT_S), "start"]
    try:
        run_checked(
            _server_argv(argv), what="pg_ctl start", timeout_s=START_TIMEOUT_S + 10, cwd=pg_paths.root, env=_clean_env()
        )
    except InfraError as exc:
        raise InfraError(f"{exc}; see {pg_paths.log}:\n{tail(pg_paths.log)}") from exc
    pid = postmaster_pid(pg_paths)
    if pid is None or not pid_alive(pid):
        raise InfraError(f"pg_ctl reported a start but no postmaster runs; see {pg_paths.log}")
    mode = "TLS 1.3, client certificates" if certs is not None else "plaintext"
    log(f"postgres ready on {LOOPBACK}:{port} ({mode}) in {time.monotonic() - started:.1f} s (pid {pid})")
    return pid


def _psql(bindir: Path, pg_paths: PgPaths, port: int, database: str, sql: str, timeout_s: float = 30) -> str:
    """psql over the stack's unix socket: our own tools need no certificate, with TLS on or off."""
    argv = [str(bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA"]
    argv += ["-h", str(pg_paths.sockets), "-p", str(port), "-U", SUPERUSER, "-d", database, "-c", sql]
    env = {**_clean_env(), "PGCONNECT_TIMEOUT": "5"}
    return run_checked(argv, what=f"psql {sql!r}", timeout_s=timeout_s, env=env).strip()


def ensure_database(bindir: Path, pg_paths: PgPaths, port: int) -> None:
    """Create the `treasury` database owned by `treasury` unless it exists."""
    # DATABASE and SUPERUSER are constants of this module, not input: no injection possible.
    query = f"select 1 from pg_database where datname = '{DATABASE}'"  # noqa: S608  # nosec B608
    # (bandit 1.9 may also warn "nosec encountered (B608), but no failed test" here: PyCQA/bandit#1204)
    exists = _psql(bindir, pg_paths, port, "postgres", query)
    if exists != "1":
        _psql(bindir, pg_paths, port, "postgres", f"create database {DATABASE} owner {SUPERUSER}")
        log(f"created database {DATABASE}")


def answers(bindir: Path, pg_paths: PgPaths, port: int) -> bool:
    """True when the treasury database answers a query (the health check behind an idempotent `up`)."""
    try:
        return _psql(bindir, pg_paths, port, DATABASE, "select 1", timeout_s=10) == "1"
    except InfraError:
        return False


def stop(bindir: Path | None, pg_paths: PgPaths, pid: int | None) -> None:
    """`pg_ctl -m fast stop` (rolls back sessions, checkpoints); signals if that fails or is missing."""
    pid = pid if is_ours(pid, pg_paths) else postmaster_pid(pg_paths)
    if pid is None or not is_ours(pid, pg_paths):
        return
    if bindir is not None:
        argv = [str(bindir / "pg_ctl"), "-D", str(pg_paths.data), "-m", "fast", "-w"]
        argv += ["-t", str(STOP_TIMEOUT_S), "stop"]
        try:
            run_checked(
                _server_argv(argv),
                what="pg_ctl stop",
                timeout_s=STOP_TIMEOUT_S + 10,
                cwd=pg_paths.root,
                env=_clean_env(),
            )
        except InfraError as exc:
            log(f"{exc}: stopping the postmaster by signal")
    # SIGINT is postgres's "fast shutdown"; the SIGKILL fallback also takes the backends.
    stop_group(pid, what="postgres", grace_s=STOP_TIMEOUT_S, sig=signal.SIGINT)


def kill(pid: int | None, pg_paths: PgPaths) -> None:
    """SIGKILL the postmaster and its backends: a crash as clients see it (for chaos tests)."""
    if pid is not None and is_ours(pid, pg_paths):
        kill_tree(pid, what="postgres")
