"""``treasury-orch var compute FILE``: per-account historical VaR / ES from a flow history file.

Output is one JSON object per account and line (``account_id``, ``days``, ``var_usd``, ``es_usd``),
accounts sorted. Values are full float64 (``json`` writes the shortest repr that round-trips), not
rounded: these are risk measures, not money, and rounding would make the output disagree with
``np.quantile`` which is the audit reference. An account without any observed day in the window
gets ``null`` VaR / ES (JSON has no NaN) and ``days: 0``; ``days < window`` tells the reader the
VaR rests on a short history.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TypedDict

from risk.history import load_history
from risk.kernels import tail_probability, var_and_es

EXIT_OK = 0
EXIT_USAGE = 2


class VarRow(TypedDict):
    account_id: str
    days: int
    var_usd: float | None
    es_usd: float | None


def compute_file(path: str | Path, confidence: float = 0.99, window: int = 250, min_days: int = 1) -> list[VarRow]:
    """VaR / ES of each account's last ``window`` days in a long-form CSV or Parquet file."""
    tail_probability(confidence)  # validate before reading a possibly large file
    history = load_history(path, window)
    result = var_and_es(history.flows, confidence, min_days)
    return [
        VarRow(account_id=account, days=int(days), var_usd=_finite(var), es_usd=_finite(es))
        for account, days, var, es in zip(
            history.account_ids, result.days.tolist(), result.var.tolist(), result.es.tolist(), strict=True
        )
    ]


def run_compute_cli(path: str, confidence: float, window: int) -> int:
    """Print one JSON object per account; errors go to stderr with exit code 2.

    ``ValueError`` covers :class:`~risk.history.HistoryError`, a bad confidence / window and
    Arrow's parse errors (``ArrowInvalid`` is a ``ValueError``); ``OSError`` a missing file.
    """
    try:
        rows = compute_file(path, confidence, window)
    except (ValueError, OSError) as exc:
        print(f"treasury-orch var compute: {exc}", file=sys.stderr)
        return EXIT_USAGE
    out = sys.stdout
    for row in rows:
        out.write(json.dumps(row, allow_nan=False) + "\n")
    out.flush()
    return EXIT_OK


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value
