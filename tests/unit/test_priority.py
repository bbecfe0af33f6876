"""Process priorities: the decision path at Ray's worker niceness 0, VaR work below it."""

from __future__ import annotations

import os
import subprocess
import sys

from treasury.priority import BATCH_NICENESS, RAY_WORKER_NICENESS, decisions_first

BATCH = "from treasury.priority import run_as_batch; print(run_as_batch())"


def test_workers_start_at_niceness_zero_unless_the_operator_chose() -> None:
    environ: dict[str, str] = {}
    assert decisions_first(environ) == "0" and environ == {RAY_WORKER_NICENESS: "0"}
    chosen = {RAY_WORKER_NICENESS: "15"}
    assert decisions_first(chosen) == "15" and chosen == {RAY_WORKER_NICENESS: "15"}


def test_batch_work_lowers_its_priority_and_never_raises_it() -> None:
    # In child processes: a niceness, once raised, cannot be lowered again without privileges.
    lowered = subprocess.run([sys.executable, "-c", BATCH], capture_output=True, text=True, check=True, timeout=60)
    assert int(lowered.stdout) == max(BATCH_NICENESS, os.nice(0))
    already_lower = subprocess.run(["nice", "-n", "15", sys.executable, "-c", BATCH], capture_output=True, text=True,
                                   check=True, timeout=60)
    assert int(already_lower.stdout) == min(19, os.nice(0) + 15)
