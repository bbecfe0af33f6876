"""``treasury-orch``: the one command for operators, treasurers and quants."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="treasury-orch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    infra = sub.add_parser("infra", help="start, stop or inspect the local Kafka and Postgres")
    infra.add_argument("action", choices=["up", "down", "status"])
    infra.set_defaults(handler=_infra)

    schemas = sub.add_parser("schemas", help="regenerate or check the checked-in JSON Schema files")
    schemas.add_argument("action", choices=["generate", "check"])
    schemas.set_defaults(handler=_schemas)
    return parser


def _infra(args: argparse.Namespace) -> int:
    from serve_app.infra import stack

    return stack.main(args.action)


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
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
