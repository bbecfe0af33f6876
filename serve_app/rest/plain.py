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

from treasury.actor_names import NAMESPACE


def serve(host: str, port: int, ray_address: str) -> None:
    """Join the running Ray cluster (for the shards and the VaR and replay actors), then serve."""
    import ray
    import uvicorn

    from serve_app.rest.deployment import build_ingress_app

    ray.init(address=ray_address, namespace=NAMESPACE, log_to_driver=False)
    uvicorn.run(build_ingress_app(), host=host, port=port, log_level="warning", access_log=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ray-address", default=os.environ.get("RAY_ADDRESS", "auto"),
                        help="the Ray cluster's GCS address (default RAY_ADDRESS, else auto)")
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.ray_address)


if __name__ == "__main__":
    main()
