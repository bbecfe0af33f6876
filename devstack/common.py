"""What the Kafka and Postgres launchers share: one error type, and process, port and file plumbing.

Both launchers start long-lived daemons that must outlive the command that started them, be found
again by a later command (through pids persisted on disk), and be stopped without leaving anything
behind. The helpers here exist so that each of those steps is done one careful way, in one place.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"

# Popen objects of daemons this process spawned, kept so that they are reaped (not left as zombies,
# which os.kill(pid, 0) would still report as alive) and never garbage-collected while running.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class InfraError(RuntimeError):
    """A local-stack failure whose message is one line saying what went wrong and what to do."""


def log(message: str) -> None:
    """Progress for humans on stderr, so stdout stays machine-readable (`eval "$(... infra up)"`)."""
    print(f"[infra] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- polling


def wait_until(predicate: Callable[[], bool], timeout_s: float, *, first_interval_s: float = 0.05) -> bool:
    """Poll `predicate` until it holds or `timeout_s` passes; True when it held.

    The interval doubles up to 0.5 s: quick answers for things that are nearly ready, little CPU
    spent on things that take seconds (a broker start).
    """
    deadline = time.monotonic() + timeout_s
    interval = first_interval_s
    while True:
        if predicate():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(interval, remaining))
        interval = min(interval * 2, 0.5)


# ----------------------------------------------------------------------------------------------- ports


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when a server could listen on host:port now.

    SO_REUSEADDR mirrors what Kafka and Postgres set themselves, so connections of a previous run
    lingering in TIME_WAIT do not make a port look taken, while a live listener still does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


# Ports for the listeners the stack and its tests start. Not the kernel's ephemeral range
# (32768-60999 on Linux by default): the kernel hands those to outgoing connections at any time, so
# a port picked there can be taken by one of Ray's hundreds of connections before the listener
# binds it (haproxy then fails with "Some protocols failed to start their listeners"). Below Ray
# Serve's direct-ingress ports (30000 up) and above Ray's worker ports (10002-19999).
LISTEN_PORTS = range(20000, 30000)


# Every port pick_free_port has returned in this process: a port is picked for a listener that
# binds it later, so two picks in a row (Serve's, then Prometheus's) must not be the same port.
_PICKED: set[int] = set()


def pick_free_port(host: str = LOOPBACK, ports: range = LISTEN_PORTS, attempts: int = 200) -> int:
    """A port from ``ports`` free right now and not returned before in this process, chosen at
    random (two runs side by side rarely meet); the kernel's own choice (bind to port 0) when none
    of the tries is."""
    for _ in range(attempts):
        port = ports[secrets.randbelow(len(ports))]
        if port not in _PICKED and port_is_free(port, host):
            _PICKED.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def choose_port(
    previous: int | None,
    *,
    is_free: Callable[[int], bool] = port_is_free,
    pick: Callable[[], int] = pick_free_port,
    avoid: Collection[int] = (),
    attempts: int = 20,
) -> int:
    """The previous port when it is still free (clients keep their address), else a new free one.

    `avoid` holds ports already promised to another listener of the same stack: two free ports
    chosen one after the other may otherwise be the same port.
    """
    if previous is not None and previous not in avoid and is_free(previous):
        return previous
    for _ in range(attempts):
        candidate = pick()
        if candidate not in avoid:
            return candidate
    raise InfraError(f"could not find a free port on {LOOPBACK} after {attempts} tries; free some ports")


def port_taken_message(port: int, what: str) -> str:
    return (
        f"port {port} needed by {what} is taken by another process; find it with "
        f"`ss -ltnp 'sport = :{port}'` and stop it, or run `treasury-orch infra down` then `up` to move ports"
    )


def require_free_port(port: int, what: str) -> None:
    """Fail with a clear message when `port` (which `what` must keep) is held by someone else."""
    if not port_is_free(port):
        raise InfraError(port_taken_message(port, what))


def port_accepts(port: int, host: str = LOOPBACK, timeout_s: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port (a cheap liveness probe)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


# ------------------------------------------------------------------------------------------- processes


def spawn_daemon(argv: Sequence[str], *, log_path: Path, cwd: Path, env: dict[str, str] | None = None) -> int:
    """Start a daemon in its own session with output to `log_path`; returns its pid.

    Its own session makes it the leader of its own process group, so stopping it can signal the
    whole group, and a Ctrl-C in the terminal that ran `infra up` does not reach it.
    """
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - argv is built by this package, never from user input
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    return proc.pid


def _proc_state(pid: int) -> str | None:
    """The one-letter state in /proc/<pid>/stat (None when unreadable or on a system without /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: the state follows the last ')'.
    return stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else None


def pid_alive(pid: int | None) -> bool:
    """True when `pid` is a live process; zombies count as dead.

    A finished child of ours stays a zombie until reaped, and os.kill(pid, 0) still succeeds on
    zombies, so we reap our own children and look at /proc for everybody else's.
    """
    if pid is None or pid <= 0:
        return False
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            del _CHILDREN[pid]
            return False
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, belongs to another user (postgres as seen by a non-root caller)
    return _proc_state(pid) != "Z"


def cmdline(pid: int) -> str | None:
    """The process's command line with spaces between arguments (None when unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def pid_matches(pid: int | None, *needles: str) -> bool:
    """True when `pid` is alive and its command line contains every needle.

    Pids in a state file can be reused by unrelated processes after a reboot or a crash; checking
    the command line (which names our config file or data dir) makes sure we only ever signal ours.
    Where /proc is not readable we fall back to plain liveness.
    """
    if not pid_alive(pid):
        return False
    assert pid is not None
    line = cmdline(pid)
    if line is None:
        return True
    return all(needle in line for needle in needles)


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Send `sig` to the process group led by `pid` (or to `pid` alone when it leads none)."""
    try:
        os.killpg(pid, sig)
        return
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        raise InfraError(f"not allowed to signal process group {pid}: run as the user that started it") from exc
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def stop_group(pid: int, *, what: str, grace_s: float, sig: signal.Signals = signal.SIGTERM) -> None:
    """Ask a daemon to stop, wait up to `grace_s`, then SIGKILL it and its children; wait until gone."""
    if not pid_alive(pid):
        wait_reaped([pid])
        return
    signal_group(pid, sig)
    if wait_until(lambda: not pid_alive(pid), grace_s):
        wait_reaped([pid])
        return
    log(f"{what} (pid {pid}) still running {grace_s:.0f} s after {sig.name}: SIGKILL")
    kill_tree(pid, what=what)


def kill_tree(pid: int, *, what: str, timeout_s: float = 15.0) -> None:
    """SIGKILL a daemon, its process group and its descendants; wait until all of them are gone.

    Descendants are signalled one by one because they may sit in groups of their own (every
    postgres backend calls setsid()), and orphaned backends would hold the old server's shared
    memory and stop the next start.
    """
    family = [pid, *descendants(pid)]
    signal_group(pid, signal.SIGKILL)
    for member in family[1:]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(member, signal.SIGKILL)
    if wait_until(lambda: not any(pid_alive(p) for p in family), timeout_s):
        wait_reaped(family)
    else:
        left = [p for p in family if pid_alive(p)]
        raise InfraError(
            f"{what} processes {left} survived SIGKILL for {timeout_s:.0f} s; check `ps -o pid,stat,cmd -p ...`"
        )


def _in_process_table(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_reaped(pids: Collection[int], timeout_s: float = 5.0) -> None:
    """Best effort: give the parents of dead daemons a moment to reap them.

    A dead daemon stays in the process table as a zombie until its parent (init, for a daemon)
    reaps it; `pgrep` still lists zombies. Some container inits reap only every second or so, and
    `down` should leave nothing for `pgrep` to find, so we wait a little, but never fail on it.
    """
    wait_until(lambda: not any(_in_process_table(p) for p in pids), timeout_s)


def _parent_map() -> dict[int, int]:
    """pid -> parent pid for every process in /proc (empty where there is no /proc)."""
    parents: dict[int, int] = {}
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[-1].split()
            if len(fields) > 1:
                parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(pid: int) -> list[int]:
    """Children, grandchildren, ... of `pid`, found through /proc."""
    parents = _parent_map()
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        children = [child for child, parent in parents.items() if parent == current]
        found += children
        frontier += children
    return found


def pids_matching(*needles: str) -> list[int]:
    """Live processes whose command line contains every needle (for finding daemons a lost state file
    no longer names)."""
    matches: list[int] = []
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            line = cmdline(int(entry.name))
            if line and all(needle in line for needle in needles) and pid_alive(int(entry.name)):
                matches.append(int(entry.name))
    return matches


def run_checked(
    argv: Sequence[str], *, what: str, timeout_s: float, cwd: Path | None = None, env: dict[str, str] | None = None
) -> str:
    """Run a short command to completion; its output on success, an InfraError naming it otherwise."""
    try:
        done = subprocess.run(  # noqa: S603 - argv is built by this package
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            timeout=timeout_s,
            check=False,
        )
    except FileNotFoundError as exc:
        raise InfraError(f"{what}: {argv[0]} not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise InfraError(f"{what} did not finish within {timeout_s:.0f} s: {' '.join(argv)}") from exc
    output = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        raise InfraError(f"{what} failed (exit {done.returncode}): {last_line(output)}")
    return output


# ----------------------------------------------------------------------------------------------- files


def last_line(text: str) -> str:
    """The last non-blank line, which is where command-line tools put the reason they failed."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def tail(path: Path, lines: int = 15) -> str:
    """The end of a log file, to put the cause of a failed start right in front of the reader."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file (e.g. state.json)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def file_lock(path: Path, *, what: str, timeout_s: float) -> Iterator[None]:
    """Hold an exclusive flock on `path`, polling up to `timeout_s` rather than blocking forever.

    Two `up`s on one home (a terminal and a pytest session) would otherwise both start a broker on
    the same data dir; two resolutions into one jar cache would overwrite each other's files.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:

        def acquired() -> bool:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    return False
                raise
            return True

        if not wait_until(acquired, timeout_s):
            raise InfraError(
                f"{what} is locked by another process for over {timeout_s:.0f} s ({path}); wait or stop it"
            )
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
