"""The pull front: the REST app as plain uvicorn processes beside Ray Serve, for the Bank-Connector.

    RAY_ADDRESS=<gcs host:port> DATABASE_URL=... KAFKA_BOOTSTRAP=... \
        .venv/bin/python -m serve_app.rest.plain --port 8001 [--workers N]

``treasury-orch run`` starts it when ``REST_PULL_WORKERS`` is above 0 (``start``), on
``SERVE_HOST``:``REST_PULL_PORT``, and its TLS front routes ``/sweep-intent`` and
``POST /balances`` there (``devstack/tls_front.py``).

Why it exists: bench/rest measures Ray Serve's proxy and replica at 10-20 ms of CPU per request
on top of the app's own 1.5-2.5 ms (the HTTP proxy, the hop to the replica, the streamed answer),
so on a small machine a Bank-Connector pulling with many workers is limited by Serve's path, not
by the app. This serves the very app a Serve replica builds (``build_ingress_app``: same routes,
same auth and scopes per request, same Postgres reads, positions from the same Ray shards), so
nothing a caller relies on changes: a pull is one read of the ledger whichever process answers,
and there is no cache to go stale. Run one process per core behind the ingress (nginx) and route
the hot paths (``/sweep-intent``, ``POST /balances``) to them; Serve keeps the rest and its
autoscaling.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess  # nosec B404
import sys
import time
from dataclasses import dataclass

import httpx
from fastapi import FastAPI

from treasury.actor_names import NAMESPACE
from treasury.settings import RuntimeSettings

READY_TIMEOUT_S = 180.0  # each worker joins Ray and opens its pool; a busy 2-core machine is slow
STOP_GRACE_S = 30.0


@dataclass(frozen=True)
class PullFront:
    """A running pull front: uvicorn's supervisor process (its workers are its children)."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    workers: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def start(settings: RuntimeSettings, ray_address: str, ready_timeout_s: float = READY_TIMEOUT_S) -> PullFront | None:
    """The front ``REST_PULL_WORKERS`` asks for (None at 0), answering ``/healthz`` when returned.

    Raises ``RuntimeError`` naming ``REST_PULL_PORT`` when the process exits before it answers (the
    port taken, most often), or when it is not ready in time (then it is stopped first)."""
    if settings.rest_pull_workers == 0:
        return None
    argv = [sys.executable, "-m", "serve_app.rest.plain", "--host", settings.serve_host,
            "--port", str(settings.rest_pull_port), "--workers", str(settings.rest_pull_workers),
            "--ray-address", ray_address]
    process = subprocess.Popen(argv, env={**os.environ, **settings.as_env()})  # noqa: S603  # nosec B603
    front = PullFront(process, settings.local_serve_host, settings.rest_pull_port, settings.rest_pull_workers)
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if (code := process.poll()) is not None:
            raise RuntimeError(f"the pull front on REST_PULL_PORT={front.port} exited with {code} before answering "
                               "/healthz (is the port taken?)")
        try:
            if httpx.get(f"{front.url}/healthz", timeout=2).status_code == 200:
                return front
        except httpx.HTTPError:
            pass
        time.sleep(0.5)  # polling interval under the deadline
    stop(front)
    raise RuntimeError(f"the pull front on REST_PULL_PORT={front.port} did not answer /healthz "
                       f"within {ready_timeout_s:.0f} s")


def stop(front: PullFront, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM to uvicorn's supervisor, which stops its workers; SIGKILL after ``grace_s``."""
    if front.process.poll() is None:
        front.process.terminate()
        try:
            front.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            front.process.kill()
            front.process.wait(grace_s)


def app() -> FastAPI:
    """One worker's app: joins the running Ray cluster (the shards, the VaR and replay actors) at
    ``RAY_ADDRESS``, then builds what a Serve replica builds. Each worker process calls it."""
    import ray

    from serve_app.rest.deployment import build_ingress_app

    # uvicorn installs its SIGTERM handler (stop accepting, finish the requests in flight) before it
    # builds the app, and ray.init replaces it with a bare sys.exit: every stop of `run` cut the
    # pull front's requests and printed a SystemExit traceback. Keep uvicorn's.
    graceful = signal.getsignal(signal.SIGTERM)
    ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), namespace=NAMESPACE, log_to_driver=False)
    signal.signal(signal.SIGTERM, graceful)
    return build_ingress_app()


def serve(host: str, port: int, ray_address: str, workers: int = 1) -> None:
    """``workers`` processes share the listening socket (uvicorn's own supervisor), one per core."""
    import uvicorn

    os.environ["RAY_ADDRESS"] = ray_address
    uvicorn.run("serve_app.rest.plain:app", factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ray-address", default=os.environ.get("RAY_ADDRESS", "auto"),
                        help="the Ray cluster's GCS address (default RAY_ADDRESS, else auto)")
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the port (default 1)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be 1 or more (got {args.workers})")
    serve(args.host, args.port, args.ray_address, args.workers)


if __name__ == "__main__":
    main()
