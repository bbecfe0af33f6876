"""CPU priority on a shared host: the decision path first, number crunching after.

Ray starts its worker processes at niceness 15 (``RAY_worker_niceness``) so that its own daemons
keep the CPU. On a host shared with Kafka and Postgres (nice 0) the shards then wait whenever
those are busy: ``bench/pipeline``'s p95 at 1,000 events/s was 116 ms at 15 against 37-64 ms at
0 (before the shards fetched in batches; since then 22-39 ms against 24-31 ms). So a Ray runtime
this service starts gives its workers niceness 0, and the VaR workers and scheduler, which
compute in bursts and are never waited on by a decision, lower their own priority: any process
may, without privileges.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

RAY_WORKER_NICENESS = "RAY_worker_niceness"  # Ray's own (lower-case) name, read by the raylet at start
DECISION_NICENESS = 0
BATCH_NICENESS = 10


def decisions_first(environ: MutableMapping[str, str] = os.environ) -> str:
    """Before a local ``ray.init``: workers at ``DECISION_NICENESS`` unless the operator chose."""
    return environ.setdefault(RAY_WORKER_NICENESS, str(DECISION_NICENESS))


def run_as_batch() -> int:
    """Lower this process to ``BATCH_NICENESS`` (never raise it); returns the niceness now."""
    current = os.nice(0)
    return os.nice(BATCH_NICENESS - current) if current < BATCH_NICENESS else current
