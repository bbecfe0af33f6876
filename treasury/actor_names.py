"""The Ray namespace and the names of the system's actors.

Every part finds the others by these names (a Serve replica, the CLI's ``var recompute``, a
benchmark driver), and the part that starts the system creates them under the same names. The
module imports nothing, so any layer may use it without pulling another package in.
"""

from __future__ import annotations

NAMESPACE = "treasury"
COORDINATOR = "coordinator"
VAR_SCHEDULER = "var-scheduler"
CONFIG_WATCHER = "config-watcher"


def shard_name(index: int) -> str:
    """``shard-0`` … ``shard-(SHARDS-1)``: shard ``i`` owns the partitions ``p % SHARDS == i``."""
    return f"shard-{index}"


def var_worker_name(index: int) -> str:
    return f"var-worker-{index}"
