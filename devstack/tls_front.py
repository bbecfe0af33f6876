"""The REST API's TLS 1.3-only, mutual-TLS front: Debian's nginx, proxying to Serve on loopback.

Why a front at all: Ray Serve's HTTPOptions (`ssl_keyfile`, `ssl_certfile`, `ssl_ca_certs`) are
handed to uvicorn, which keeps `ssl_cert_reqs=CERT_NONE` (a client certificate is asked for at most,
never required) and offers no way to pin the protocol to TLS 1.3. nginx does both, is a Debian
package, and is what an operator would put in front of the service anyway.

What the front enforces (the generated config, `render_conf`):

- `ssl_protocols TLSv1.3`: a TLS 1.2 (or older) hello is answered with a `protocol_version` alert.
- `ssl_verify_client on` with `ssl_conf_command VerifyMode Peer,Require`: a client that sends no
  certificate fails the handshake (`certificate_required` alert). nginx's own verify callback
  accepts any chain during the handshake and checks it per request, so a certificate from another
  CA (or an expired one) gets the project's error body with 403 and the connection closed; such a
  request never reaches Serve.
- The verified subject goes upstream as `X-Client-Subject` (any value the client sent is replaced),
  with `X-Request-ID` (nginx's id) and `X-Trace-Id` (the client's, else the request id).

Like the Kafka and Postgres launchers, the front lives in the stack home (`<home>/tls-front`:
config, logs, temp files, `front.json` with its pid and port), runs in its own session, and is
stopped by the pid it recorded and only when that pid's command line names this home's config.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from dataclasses import asdict, dataclass
from pathlib import Path

from devstack.common import (
    LOOPBACK,
    InfraError,
    atomic_write_text,
    choose_port,
    file_lock,
    log,
    pid_alive,
    pid_matches,
    pids_matching,
    port_accepts,
    require_free_port,
    run_checked,
    spawn_daemon,
    stop_group,
    tail,
    wait_until,
)
from treasury.settings import RuntimeSettings

FRONT_DIR = "tls-front"
STATE_FILE = "front.json"
READY_TIMEOUT_S = 15.0
STOP_GRACE_S = 10.0
LOCK_TIMEOUT_S = 30.0
# The API refuses bodies over REST_MAX_BODY_BYTES with its own JSON 413 naming the setting; nginx lets
# a little more through so that the API is the one to say so. nginx spools large bodies to disk.
BODY_MARGIN_BYTES = 1 << 20
NGINX_CANDIDATES = (Path("/usr/sbin/nginx"), Path("/usr/local/sbin/nginx"))


@dataclass(frozen=True)
class TlsFiles:
    """The front's certificate and key, and the CA whose client certificates it accepts."""

    cert: Path
    key: Path
    client_ca: Path

    @classmethod
    def from_settings(cls, settings: RuntimeSettings) -> TlsFiles | None:
        """None when TLS is not configured (the settings already require all three or none)."""
        if settings.tls_cert_file is None or settings.tls_key_file is None or settings.tls_client_ca_file is None:
            return None
        return cls(settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file)


@dataclass(frozen=True)
class FrontPaths:
    root: Path
    conf: Path
    log: Path
    access_log: Path
    temp: Path
    state: Path


def paths(home: Path) -> FrontPaths:
    root = home / FRONT_DIR
    return FrontPaths(
        root=root,
        conf=root / "nginx.conf",
        log=root / "error.log",
        access_log=root / "access.log",
        temp=root / "tmp",
        state=root / STATE_FILE,
    )


@dataclass
class FrontState:
    """front.json: the port (kept across restarts, so clients keep their address) and the pid."""

    port: int | None = None
    pid: int | None = None
    host: str | None = None
    upstream: str | None = None


@dataclass(frozen=True)
class Front:
    """A running front: where clients connect and which upstream it forwards to."""

    host: str
    port: int
    pid: int
    upstream: str

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"


def load_state(front_paths: FrontPaths) -> FrontState:
    """The recorded state; a missing or malformed file is an empty state (it is only a cache)."""
    try:
        raw = json.loads(front_paths.state.read_text())
    except (OSError, ValueError):
        return FrontState()
    if not isinstance(raw, dict):
        return FrontState()

    def _int(value: object) -> int | None:
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def _str(value: object) -> str | None:
        return value if isinstance(value, str) else None

    return FrontState(_int(raw.get("port")), _int(raw.get("pid")), _str(raw.get("host")), _str(raw.get("upstream")))


def _save_state(front_paths: FrontPaths, state: FrontState) -> None:
    atomic_write_text(front_paths.state, json.dumps(asdict(state), indent=2) + "\n")


# -------------------------------------------------------------------------------------------- binary


def find_nginx() -> Path:
    """Debian's nginx, installed with apt-get when missing and we are root (as postgres.find_bindir)."""
    found = shutil.which("nginx") or next((str(p) for p in NGINX_CANDIDATES if p.is_file()), None)
    if found is not None:
        return Path(found)
    if os.geteuid() != 0:
        raise InfraError("nginx not found: run `sudo apt-get install -y nginx` (or bash scripts/bootstrap.sh as root)")
    log("nginx not installed: running `apt-get install -y nginx`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run_checked(["apt-get", "update"], what="apt-get update", timeout_s=600, env=env)
    run_checked(["apt-get", "install", "-y", "nginx"], what="apt-get install nginx", timeout_s=600, env=env)
    found = shutil.which("nginx") or next((str(p) for p in NGINX_CANDIDATES if p.is_file()), None)
    if found is None:
        raise InfraError("apt-get installed nginx but no nginx binary is on PATH or in /usr/sbin")
    return Path(found)


# -------------------------------------------------------------------------------------------- config


def _quoted(path: Path) -> str:
    """An nginx string argument; paths with quotes or backslashes are refused rather than escaped."""
    text = str(path)
    if any(ch in text for ch in "\"\\;\n"):
        raise InfraError(f"path {text!r} contains a quote, backslash, ';' or newline: nginx cannot take it")
    return f'"{text}"'


def render_conf(
    front_paths: FrontPaths, files: TlsFiles, *, host: str, port: int, upstream_host: str, upstream_port: int,
    max_body_bytes: int = RuntimeSettings.model_fields["rest_max_body_bytes"].default, pull_port: int | None = None,
) -> str:
    """The whole nginx.conf, rewritten on every start (the ports may move).

    With ``pull_port`` (the pull front, ``REST_PULL_WORKERS``, on ``upstream_host``), the
    Bank-Connector's hot paths go there: ``/sweep-intent`` and its sub-paths, and
    ``POST /balances``; everything else, ``GET /balances`` included, goes to Serve. Both upstreams
    serve the same app, so the split only moves where the CPU is spent.
    """
    p, t = front_paths, front_paths.temp
    trace_map = 'map $http_x_trace_id $treasury_trace_id {\n    "" $request_id;\n    default $http_x_trace_id;\n  }'
    refused = (
        "'{\"error\": {\"field\": \"client_certificate\", \"reason\": \"not issued by the configured CA: "
        "$ssl_client_verify\"}}'"
    )
    upstream_down = (
        "'{\"error\": {\"field\": \"upstream\", \"reason\": \"temporarily unavailable, retry: "
        "the API behind the TLS front is not answering\"}}'"
    )
    pull_upstream, pull = ("", "") if pull_port is None else _pull_front(upstream_host, pull_port)
    return f"""# Written by devstack/tls_front.py on every start; edits here are overwritten.
worker_processes 1;
daemon off;
pid {_quoted(p.root / "nginx.pid")};
error_log {_quoted(p.log)} info;
events {{
  worker_connections 512;
}}
http {{
  server_tokens off;
  log_format treasury '$remote_addr [$time_iso8601] "$request" $status $body_bytes_sent '
                      'rid=$request_id subject="$ssl_client_s_dn" verify=$ssl_client_verify '
                      '$ssl_protocol rt=$request_time up=$upstream_addr';
  access_log {_quoted(p.access_log)} treasury;
  client_body_temp_path {_quoted(t / "body")};
  proxy_temp_path {_quoted(t / "proxy")};
  fastcgi_temp_path {_quoted(t / "fastcgi")};
  uwsgi_temp_path {_quoted(t / "uwsgi")};
  scgi_temp_path {_quoted(t / "scgi")};
  client_max_body_size {max_body_bytes + BODY_MARGIN_BYTES};
  {trace_map}
  upstream serve {{
    server {upstream_host}:{upstream_port};
    keepalive 16;
  }}{pull_upstream}
  server {{
    listen {host}:{port} ssl;
    ssl_certificate {_quoted(files.cert)};
    ssl_certificate_key {_quoted(files.key)};
    ssl_protocols TLSv1.3;
    ssl_client_certificate {_quoted(files.client_ca)};
    ssl_verify_client on;
    ssl_verify_depth 2;
    # nginx asks for a certificate but lets the handshake finish without one; this makes its absence
    # a handshake failure (certificate_required alert) instead of a 400 page.
    ssl_conf_command VerifyMode Peer,Require;
    ssl_session_tickets off;
    # 495: the certificate does not verify against the CA (unknown issuer, expired);
    # 496: none was sent (unreachable with VerifyMode Require, kept as a second guard).
    error_page 495 496 = @refused;
    location @refused {{
      default_type application/json;
      return 403 {refused};
    }}
    # Serve not answering (starting, restarting): the project's error body and 503, as the API's own
    location @upstream_down {{
      default_type application/json;
      return 503 {upstream_down};
    }}
    location / {{
      proxy_pass http://serve;
{_PROXY}
    }}{pull}
  }}
}}
"""


def _pull_front(host: str, port: int) -> tuple[str, str]:
    """The pull front's upstream (with the method map ``POST /balances`` needs) and its locations."""
    upstream = f"""
  upstream pull {{
    server {host}:{port};
    keepalive 16;
  }}
  map $request_method $treasury_balances_upstream {{
    POST pull;
    default serve;
  }}"""
    locations = f"""
    # The pull front (REST_PULL_WORKERS): the same app under plain uvicorn, for the Bank-Connector.
    location ~ ^/sweep-intent(/|$) {{
      proxy_pass http://pull;
{_PROXY}
    }}
    location = /balances {{
      proxy_pass http://$treasury_balances_upstream;
{_PROXY}
    }}"""
    return upstream, locations


# How every location proxies (nginx does not inherit proxy_pass, and the headers must match).
_PROXY = """      error_page 502 504 = @upstream_down;
      proxy_http_version 1.1;
      # Bodies stream both ways instead of spooling to temp files: nginx's workers (nobody, when
      # started as root) cannot write in the stack home, which turned any statement over 16 KB into
      # a 500; and a statement then reaches the API as it arrives.
      proxy_request_buffering off;
      proxy_buffering off;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Client-Subject $ssl_client_s_dn;
      proxy_set_header X-Client-Verify $ssl_client_verify;
      proxy_set_header X-Request-ID $request_id;
      proxy_set_header X-Trace-Id $treasury_trace_id;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto https;"""


def _check_files(files: TlsFiles) -> None:
    """Name the setting whose file is missing, rather than leave nginx to fail on its own terms."""
    for key, path in (("TLS_CERT_FILE", files.cert), ("TLS_KEY_FILE", files.key),
                      ("TLS_CLIENT_CA_FILE", files.client_ca)):
        if not path.is_file():
            raise InfraError(f"{key}: {path} is not a file; make development ones with `bash scripts/dev_ca.sh`")


def _argv(nginx: Path, front_paths: FrontPaths, *extra: str) -> list[str]:
    # -e: the error log from the first line on (the compiled-in one may be /var/log/nginx, not ours).
    return [str(nginx), "-p", str(front_paths.root), "-c", str(front_paths.conf), "-e", str(front_paths.log), *extra]


def _ours(pid: int | None, front_paths: FrontPaths) -> bool:
    """A live nginx master started with this home's config (its title keeps the command line)."""
    return pid_matches(pid, "nginx", str(front_paths.conf))


def _stop_recorded(front_paths: FrontPaths, state: FrontState) -> None:
    """Stop the recorded master and any master of this config that the state file lost."""
    pids = [state.pid] if state.pid is not None and _ours(state.pid, front_paths) else []
    pids += [pid for pid in pids_matching("nginx: master", str(front_paths.conf)) if pid not in pids]
    for pid in pids:
        # SIGQUIT is nginx's graceful shutdown: open requests finish, then the workers exit.
        stop_group(pid, what="tls front (nginx)", grace_s=STOP_GRACE_S, sig=signal.SIGQUIT)
    state.pid = None


# ----------------------------------------------------------------------------------------- lifecycle


def start(
    home: Path,
    files: TlsFiles,
    *,
    upstream_port: int,
    upstream_host: str = LOOPBACK,
    host: str = LOOPBACK,
    port: int = 0,
    max_body_bytes: int = RuntimeSettings.model_fields["rest_max_body_bytes"].default,
    pull_port: int | None = None,
) -> Front:
    """(Re)start the front of this stack home; port 0 keeps the previous port when free, else a free one.

    A front this home recorded earlier (left by a crashed run) is stopped first, so there is only
    ever one, and its config always matches the upstream it is asked for.
    """
    home = Path(home).expanduser().resolve()
    front_paths = paths(home)
    front_paths.root.mkdir(parents=True, exist_ok=True)
    _check_files(files)
    nginx = find_nginx()
    with file_lock(front_paths.root / ".lock", what=f"tls front of {home}", timeout_s=LOCK_TIMEOUT_S):
        state = load_state(front_paths)
        _stop_recorded(front_paths, state)
        if port:
            require_free_port(port, "the tls front (TLS_PORT)")
            chosen = port
        else:
            chosen = choose_port(state.port, avoid={upstream_port, pull_port or upstream_port})
        front_paths.temp.mkdir(exist_ok=True)
        front_paths.conf.write_text(
            render_conf(front_paths, files, host=host, port=chosen, upstream_host=upstream_host,
                        upstream_port=upstream_port, max_body_bytes=max_body_bytes, pull_port=pull_port)
        )
        try:
            run_checked(_argv(nginx, front_paths, "-t", "-q"), what="nginx -t (tls front config)", timeout_s=30)
        except InfraError as exc:
            # nginx -t also binds the listen address; its reason is the last [emerg] line of the log
            emerg = [line for line in tail(front_paths.log, 30).splitlines() if "[emerg]" in line]
            reason = emerg[-1].split("[emerg] ", 1)[-1] if emerg else "see the log"
            raise InfraError(f"{exc}: {reason}; config {front_paths.conf}, log {front_paths.log}") from exc
        upstream = f"{upstream_host}:{upstream_port}"
        pid = spawn_daemon(_argv(nginx, front_paths), log_path=front_paths.log, cwd=front_paths.root)
        state.port, state.pid, state.host, state.upstream = chosen, pid, host, upstream
        _save_state(front_paths, state)  # before waiting, so `stop` finds it whatever happens next
        try:
            if not wait_until(lambda: not pid_alive(pid) or port_accepts(chosen, host), READY_TIMEOUT_S) \
                    or not pid_alive(pid):
                raise InfraError(f"tls front (nginx) did not start on {host}:{chosen}; see {front_paths.log}:\n"
                                 f"{tail(front_paths.log)}")
        except BaseException:  # a failed start (or Ctrl-C meanwhile) leaves nothing running
            _stop_recorded(front_paths, state)
            _save_state(front_paths, state)
            raise
    log(f"tls front on https://{host}:{chosen} -> http://{upstream} (pid {pid}, TLS 1.3, client certificates required)")
    return Front(host, chosen, pid, upstream)


def start_for(settings: RuntimeSettings, home: Path) -> Front | None:
    """The front the settings ask for (None when TLS is not configured), forwarding to Serve, and
    the Bank-Connector's hot paths to the pull front when ``REST_PULL_WORKERS`` runs one."""
    files = TlsFiles.from_settings(settings)
    if files is None:
        return None
    pull_port = settings.rest_pull_port if settings.rest_pull_workers else None
    return start(home, files, upstream_port=settings.serve_port, upstream_host=settings.local_serve_host,
                 host=settings.tls_host, port=settings.tls_port, max_body_bytes=settings.rest_max_body_bytes,
                 pull_port=pull_port)


def stop(home: Path, front: Front | None = None) -> None:
    """Stop this home's front and wait until it is gone; harmless when none runs.

    With `front`, only that one: a caller stops the front it started, never one that a later
    start in the same home has put in its place.
    """
    front_paths = paths(Path(home).expanduser().resolve())
    if not front_paths.root.is_dir():
        return
    with file_lock(front_paths.root / ".lock", what="tls front", timeout_s=LOCK_TIMEOUT_S):
        state = load_state(front_paths)
        if front is not None and state.pid != front.pid:
            return
        _stop_recorded(front_paths, state)
        _save_state(front_paths, state)


def status(home: Path) -> dict[str, object]:
    """Whether this home's front runs, its address, pid, upstream and logs."""
    front_paths = paths(Path(home).expanduser().resolve())
    state = load_state(front_paths)
    running = _ours(state.pid, front_paths)
    return {
        "running": running,
        "address": f"https://{state.host or LOOPBACK}:{state.port}" if state.port else None,
        "pid": state.pid if running else None,
        "upstream": state.upstream,
        "log": str(front_paths.log),
        "access_log": str(front_paths.access_log),
    }
