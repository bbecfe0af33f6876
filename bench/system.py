"""The whole Ray system (coordinator, shards, VaR scheduler, Serve) in a child process of its own.

    .venv/bin/python -m bench.system      # the driver; settings from the environment (KAFKA_BOOTSTRAP, ...)

The load test, the soak and the chaos tests drive the system from outside, as the Bank-Connector
would, and must be able to kill all of Ray with SIGKILL and start it again: that needs Ray in a
process tree of its own rather than in the test's process (which may already hold another Ray
session). ``RaySystem`` starts the driver, waits for its ready line, finds the processes of each
part (by ancestry, never by name across the machine) and kills or stops the tree.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import httpx
import psutil

READY = "SYSTEM READY"
START_TIMEOUT_S = 180.0
PASS_THROUGH = ("COVERAGE_PROCESS_START", "COVERAGE_FILE", "TREASURY_CRASH_AT", "TREASURY_CRASH_ONCE_FILE",
                "LOG_LEVEL", "PATH", "HOME", "LANG", "TMPDIR", "VIRTUAL_ENV")


def driver_main() -> int:
    """Start Ray locally (never an existing cluster), the actors and Serve; stop them on SIGTERM."""
    import ray
    from ray import serve

    from actors.system import start_actors, stop_actors
    from serve_app.rest.deployment import deploy
    from treasury.actor_names import NAMESPACE
    from treasury.logs import configure_logging
    from treasury.priority import decisions_first
    from treasury.settings import RuntimeSettings, policy_from_env

    configure_logging()
    settings = RuntimeSettings.from_env()
    env = {**settings.as_env(), **{k: os.environ[k] for k in PASS_THROUGH if k in os.environ and
                                   k.startswith(("COVERAGE", "TREASURY", "LOG"))}}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    decisions_first()  # as `treasury-orch run` starts Ray
    ray.init(namespace=NAMESPACE, num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": env})
    try:
        start_actors(settings, policy_from_env())
        deploy(settings)
        print(READY, json.dumps({"pid": os.getpid(), "serve_port": settings.serve_port}), flush=True)
        stop.wait()
    finally:
        serve.shutdown()
        stop_actors(settings)
        ray.shutdown()
    return 0


class RaySystem:
    """One driver process and everything Ray starts under it."""

    def __init__(self, env: dict[str, str], serve_port: int, log_path: Path) -> None:
        self._env = env
        self.serve_port = serve_port
        self._log_path = log_path
        self._proc: subprocess.Popen[str] | None = None
        self._log: IO[str] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.serve_port}"

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def start(self, timeout: float = START_TIMEOUT_S, attempts: int = 3) -> float:
        """Start the driver and wait until Serve answers /readyz; returns the seconds it took.

        On a busy machine Ray's own start-up can time out ("the current node timed out during
        startup"): then what was started is killed and the start tried again, ``attempts`` times.
        """
        started = time.monotonic()
        for attempt in range(1, attempts + 1):
            try:
                self._start_once(timeout)
                break
            except RuntimeError:
                self.kill()
                if attempt == attempts:
                    raise
        return time.monotonic() - started

    def _start_once(self, timeout: float) -> None:
        started = time.monotonic()
        env = {k: v for k, v in os.environ.items() if k in PASS_THROUGH}
        env.update(self._env)
        env.pop("RAY_ADDRESS", None)  # always a local Ray of our own
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self._log_path.open("a")
        self._proc = subprocess.Popen([sys.executable, "-m", "bench.system"], env=env, stdout=subprocess.PIPE,
                                      stderr=self._log, text=True, start_new_session=True)
        ready = threading.Event()
        threading.Thread(target=self._pump, args=(self._proc.stdout, self._log, ready), daemon=True).start()
        deadline = started + timeout
        while not ready.wait(0.2):  # the driver prints its ready line once everything runs
            if self._proc.poll() is not None:
                raise RuntimeError(f"the system driver exited with {self._proc.returncode}; see {self._log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the system driver not ready within {timeout:.0f} s; see {self._log_path}")
        self.wait_ready(deadline - time.monotonic())

    @staticmethod
    def _pump(stdout: IO[str] | None, log: IO[str], ready: threading.Event) -> None:
        """Copy the driver's stdout to its log (a full pipe would block it) and spot the ready line."""
        assert stdout is not None
        for line in stdout:
            if line.startswith(READY):
                ready.set()
            try:
                log.write(line)
                log.flush()
            except ValueError:  # the log was closed: the system is being stopped
                return

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + max(timeout, 1.0)
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)  # polling interval under a deadline
        raise RuntimeError(f"Serve on {self.base_url} not ready within the deadline; see {self._log_path}")

    def processes(self) -> list[psutil.Process]:
        """The driver and every descendant (raylet, GCS, workers, Serve)."""
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def pids_of(self, needle: str) -> list[int]:
        """Pids of this system's processes whose title names ``needle`` (e.g. ``AccountShardActor``)."""
        out = []
        for proc in self.processes():
            try:
                if needle in " ".join(proc.cmdline()):
                    out.append(proc.pid)
            except psutil.NoSuchProcess:
                continue
        return out

    def kill(self) -> None:
        """SIGKILL the driver and all of Ray under it, as a machine losing the runtime would."""
        self._kill_rest(self.processes())

    def _kill_group(self) -> None:
        """Whatever is left in the driver's own session (started with a new one), orphans included."""
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)

    def stop(self, timeout: float = 90.0) -> None:
        """Graceful: SIGTERM to the driver (it stops Serve and the actors), SIGKILL what is left."""
        if self._proc is None:
            return
        procs = self.processes()
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout)
        self._kill_rest(procs)

    def _kill_rest(self, procs: list[psutil.Process]) -> None:
        """SIGKILL ``procs`` that still run and the driver's session, wait for them, close the driver."""
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                if proc.is_running():
                    proc.kill()
        self._kill_group()
        psutil.wait_procs(procs, timeout=30)
        self._close()

    def _close(self) -> None:
        if self._proc is not None:
            self._proc.wait(30)
        if self._log is not None:
            self._log.close()
        self._proc, self._log = None, None


if __name__ == "__main__":
    raise SystemExit(driver_main())
