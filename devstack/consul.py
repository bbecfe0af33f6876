"""A Consul agent in dev mode on loopback, built from source through the Go module proxy.

Why this shape: the machines reach proxy.golang.org but neither GitHub nor releases.hashicorp.com,
and run no Docker. So the agent is compiled once from the `github.com/hashicorp/consul` module
(its nested modules `api`, `sdk`, ... come from the proxy too: the release's `replace` directives
point at folders the module zip does not contain) into a per-user cache, like the Kafka jars, and
every later start reuses the binary. Dev mode keeps the catalog and KV in memory: a fresh agent per
`up` starts empty, which is what a development stack and the tests want.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from devstack.certs import APP, StackCerts
from devstack.common import (
    LOOPBACK,
    InfraError,
    file_lock,
    log,
    pid_alive,
    pid_matches,
    port_accepts,
    run_checked,
    spawn_daemon,
    stop_group,
    tail,
    wait_until,
)

CONSUL_VERSION = "1.22.7"
MODULE = "github.com/hashicorp/consul"
# The release's go.mod points these at sub-folders; the proxy serves them as modules of their own.
NESTED_MODULES = ("api", "envoyextensions", "proto-public", "sdk", "troubleshoot")
# The 1.22.7 tree already uses api fields (ACLAuthMethod.TokenNameFormat) that its go.mod's
# api v1.33.7 lacks; api v1.34.1 is the first release on the proxy that has them.
PINNED = {"api": "v1.34.1"}
BUILD_TIMEOUT_S = 3600.0
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 15.0
MARKER = "consul.complete.json"
BINARY = "consul"


@dataclass(frozen=True)
class ConsulPaths:
    """Where one stack's agent keeps its config, data and log (all under `<home>/consul`)."""

    root: Path
    config: Path
    data: Path
    log: Path


@dataclass(frozen=True)
class ConsulPorts:
    """Every listener a dev agent opens; the ones we do not need are switched off (-1)."""

    http: int
    serf_lan: int
    serf_wan: int
    server: int


def paths(home: Path) -> ConsulPaths:
    root = home / "consul"
    return ConsulPaths(root=root, config=root / "agent.json", data=root / "data", log=root / "consul.log")


def http_addr(port: int, tls: bool = False) -> str:
    """The value of CONSUL_HTTP_ADDR (what the consul CLI and our watcher read)."""
    return f"{'https' if tls else 'http'}://{LOOPBACK}:{port}"


# ------------------------------------------------------------------------------------------- build


def cache_root(environ: dict[str, str] | None = None) -> Path:
    """The per-user folder holding this Consul version's binary, shared by every stack home.

    TREASURY_CONSUL_CACHE replaces `~/.cache/treasury-orch` (e.g. a temp dir to measure a cold build).
    """
    env = os.environ if environ is None else environ
    base = (
        Path(env["TREASURY_CONSUL_CACHE"]) if env.get("TREASURY_CONSUL_CACHE") else Path.home() / ".cache/treasury-orch"
    )
    return base.expanduser().resolve() / f"consul-{CONSUL_VERSION}"


def find_go(environ: dict[str, str] | None = None) -> str | None:
    """TREASURY_GO, else `go` on PATH, else the official tarball's /usr/local/go/bin/go."""
    env = os.environ if environ is None else environ
    if env.get("TREASURY_GO"):
        return env["TREASURY_GO"]
    found = shutil.which("go", path=env.get("PATH"))
    if found:
        return found
    fallback = Path("/usr/local/go/bin/go")
    return str(fallback) if fallback.is_file() else None


def binary_complete(cache: Path) -> bool:
    """True when a finished build's marker names this version and its binary is still there."""
    try:
        recorded = json.loads((cache / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return recorded.get("version") == CONSUL_VERSION and (cache / BINARY).is_file()


def build_or_cached(cache: Path | None = None) -> Path:
    """The consul binary, compiled from source the first time (a few minutes cold, see docs/configuration.md).

    The build writes into a scratch name renamed into place and the marker comes last, so an
    interrupted build is never mistaken for a finished one; a lock keeps two builds from racing.
    """
    cache = cache_root() if cache is None else cache
    if binary_complete(cache):
        return cache / BINARY
    with file_lock(cache / ".lock", what=f"the Consul build cache {cache}", timeout_s=BUILD_TIMEOUT_S):
        if not binary_complete(cache):  # another process may have finished while we waited
            _build(cache)
    return cache / BINARY


def go_env(go: str) -> dict[str, str]:
    """A static binary (no cgo), modules from the proxy, and whichever toolchain the module asks for.

    GOTOOLCHAIN=auto lets an older `go` (Debian's golang-go) fetch the release's toolchain, which
    is itself a module on the proxy.
    """
    env = dict(os.environ)
    env.update({"CGO_ENABLED": "0", "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": env.get("GOTOOLCHAIN", "auto")})
    env["PATH"] = f"{Path(go).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _build(cache: Path) -> None:
    go = find_go()
    if go is None:
        raise InfraError(
            "go not found: Go >= 1.21 is needed once to build Consul from source (it fetches the "
            "release's own toolchain through the module proxy); install it or set TREASURY_GO"
        )
    env = go_env(go)
    cache.mkdir(parents=True, exist_ok=True)
    log(f"building Consul {CONSUL_VERSION} from the Go module proxy into {cache} (first time only, minutes cold)")
    started = time.monotonic()
    out = run_checked([go, "mod", "download", "-json", f"{MODULE}@v{CONSUL_VERSION}"],
                      what="go mod download consul", timeout_s=BUILD_TIMEOUT_S, cwd=cache, env=env)
    source = Path(json.loads(out)["Dir"])
    work = cache / f"src.partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(source, work)  # the module cache is read-only; go.mod must be edited
    # Writable by us alone: go.mod is edited, and the copy must be removable afterwards.
    os.chmod(work, 0o700)
    for root, dirs, _files in os.walk(work):
        for name in dirs:
            os.chmod(Path(root) / name, 0o700)
    os.chmod(work / "go.mod", 0o644)
    if (work / "go.sum").exists():
        os.chmod(work / "go.sum", 0o644)
    edits = [f"-dropreplace={MODULE}/{nested}" for nested in NESTED_MODULES]
    edits += [f"-require={MODULE}/{nested}@{version}" for nested, version in PINNED.items()]
    run_checked([go, "mod", "edit", *edits], what="go mod edit", timeout_s=60, cwd=work, env=env)
    scratch = cache / f"{BINARY}.partial-{os.getpid()}"
    ldflags = f"-s -w -X {MODULE}/version.GitCommit=v{CONSUL_VERSION}-proxy"
    try:
        run_checked([go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(scratch), "."],
                    what="go build consul", timeout_s=BUILD_TIMEOUT_S, cwd=work, env=env)
        version = run_checked([str(scratch), "version"], what="consul version", timeout_s=60)
        if f"v{CONSUL_VERSION}" not in version:
            raise InfraError(f"the built consul reports {version.splitlines()[0]!r}, expected v{CONSUL_VERSION}")
        (cache / MARKER).unlink(missing_ok=True)
        os.replace(scratch, cache / BINARY)
        (cache / MARKER).write_text(json.dumps({"version": CONSUL_VERSION}) + "\n")
    finally:
        scratch.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    log(f"built consul {CONSUL_VERSION} in {time.monotonic() - started:.1f} s")


# ------------------------------------------------------------------------------------------- agent


def render_config(ports: ConsulPorts, data_dir: Path, certs: StackCerts | None = None) -> str:
    """The agent's JSON config: loopback only, our ports, and nothing that phones home.

    DNS and gRPC are switched off, and HTTPS too unless ``certs``: then the API port serves HTTPS
    only (TLS 1.3, a client certificate from the stack's CA required) and plain HTTP is off. Every
    listener left on is a port that could collide with another helper's agent on this machine.
    """
    config: dict[str, object] = {
        "bind_addr": LOOPBACK,
        "client_addr": LOOPBACK,
        "advertise_addr": LOOPBACK,
        "data_dir": str(data_dir),
        "disable_update_check": True,
        "log_level": "INFO",
        "ports": {
            "http": ports.http,
            "serf_lan": ports.serf_lan,
            "serf_wan": ports.serf_wan,
            "server": ports.server,
            "dns": -1,
            "grpc": -1,
            "grpc_tls": -1,
            "https": -1,
        },
    }
    if certs is not None:
        config["ports"] = {**config["ports"], "http": -1, "https": ports.http}  # type: ignore[dict-item]
        config["tls"] = {
            "defaults": {"ca_file": str(certs.ca), "cert_file": str(certs.cert("consul")),
                         "key_file": str(certs.key("consul")), "verify_incoming": True, "verify_outgoing": True,
                         "tls_min_version": "TLSv1_3"},
        }
    return json.dumps(config, indent=2) + "\n"


def agent_argv(binary: Path, consul_paths: ConsulPaths) -> list[str]:
    # -dev's own defaults (ports 8500/8600/8502/8503, 8300-8302) are all overridden by the file.
    return [str(binary), "agent", "-dev", f"-config-file={consul_paths.config}"]


def spawn(binary: Path, consul_paths: ConsulPaths, ports: ConsulPorts, certs: StackCerts | None = None) -> int:
    """Write the config and launch the agent in the background; returns its pid."""
    consul_paths.root.mkdir(parents=True, exist_ok=True)
    consul_paths.data.mkdir(parents=True, exist_ok=True)
    consul_paths.config.write_text(render_config(ports, consul_paths.data, certs))
    return spawn_daemon(agent_argv(binary, consul_paths), log_path=consul_paths.log, cwd=consul_paths.root)


def is_ours(pid: int | None, consul_paths: ConsulPaths) -> bool:
    """True when `pid` is a live agent started on this home's config file."""
    return pid_matches(pid, "agent", f"-config-file={consul_paths.config}")


def answers(port: int, certs: StackCerts | None = None, timeout_s: float = 2.0) -> bool:
    """True when the agent serves HTTP and has elected itself leader (KV writes work from then on)."""
    import httpx  # here, not at the top: the build entry point runs before the venv exists

    from treasury.tls import client_context

    verify = True if certs is None else client_context(certs.ca, certs.cert(APP), certs.key(APP))
    try:
        with httpx.Client(timeout=timeout_s, verify=verify) as client:
            return bool(client.get(f"{http_addr(port, certs is not None)}/v1/status/leader").json())
    except (httpx.HTTPError, ValueError):
        return False


def wait_ready(port: int, pid: int, consul_paths: ConsulPaths, certs: StackCerts | None = None,
               timeout_s: float = READY_TIMEOUT_S) -> None:
    """Block until the agent has a leader, or fail early if its process died."""
    started = time.monotonic()

    def ready() -> bool:
        if not pid_alive(pid):
            raise InfraError(
                f"Consul (pid {pid}) exited during start; see {consul_paths.log}:\n{tail(consul_paths.log)}"
            )
        return port_accepts(port) and answers(port, certs)

    address = http_addr(port, certs is not None)
    if not wait_until(ready, timeout_s, first_interval_s=0.1):
        raise InfraError(f"Consul (pid {pid}) has no leader on {address} after {timeout_s:.0f} s; "
                         f"see {consul_paths.log}")
    log(f"consul ready on {address} in {time.monotonic() - started:.1f} s (pid {pid})")


def stop(pid: int | None, consul_paths: ConsulPaths) -> None:
    """Graceful leave (SIGTERM), SIGKILL of the process group if it overstays its grace."""
    if pid is not None and is_ours(pid, consul_paths):
        stop_group(pid, what="consul", grace_s=STOP_GRACE_S)


if __name__ == "__main__":  # `python -m devstack.consul`: build (or find) the binary, print its path
    print(build_or_cached())
