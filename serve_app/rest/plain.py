"""The REST app as one plain uvicorn process beside Ray Serve: for the Bank-Connector's pull at load.

    RAY_ADDRESS=<gcs host:port> DATABASE_URL=... KAFKA_BOOTSTRAP=... \
        .venv/bin/python -m serve_app.rest.plain --port 8100

Why it exists: bench/rest measures Ray Serve's proxy and replica at 10-20 ms of CPU per request
on top of the app's own 1.5-2.5 ms (the HTTP proxy, the hop to the replica, the streamed answer),
so on a small machine a Bank-Connector pulling with many workers is limited by Serve's path, not
by the app. This serves the very app a Serve replica builds (``build_ingress_app``: same routes,
same auth and scopes per request, same Postgres reads, positions from the same Ray shards), so
nothing a caller relies on changes: a pull is one read of the ledger whichever process answers,
and there is no cache to go stale. Run one process per core behind the ingress (nginx) and route
the hot paths (``/sweep-intent``) to them; Serve keeps the rest and its autoscaling.
"""

from __future__ import annotations

import argparse
import os

from fastapi import FastAPI

from treasury.actor_names import NAMESPACE


def app() -> FastAPI:
    """One worker's app: joins the running Ray cluster (the shards, the VaR and replay actors) at
    ``RAY_ADDRESS``, then builds what a Serve replica builds. Each worker process calls it."""
    import ray

    from serve_app.rest.deployment import build_ingress_app

    ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), namespace=NAMESPACE, log_to_driver=False)
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
