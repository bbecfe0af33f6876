"""Fail when line or branch coverage is under its floor; coverage's own fail_under mixes the two."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=float, required=True)
    parser.add_argument("--branches", type=float, required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "coverage.json"
        # this interpreter's coverage, fixed arguments
        subprocess.run([sys.executable, "-m", "coverage", "json", "-q", "-o", str(out)], check=True)  # noqa: S603
        totals = json.loads(out.read_text())["totals"]
    lines = 100.0 * totals["covered_lines"] / max(1, totals["num_statements"])
    branches = 100.0 * totals["covered_branches"] / max(1, totals["num_branches"])
    print(f"coverage: {lines:.1f} % of lines (floor {args.lines:g} %), "
          f"{branches:.1f} % of branches (floor {args.branches:g} %)")
    return 0 if lines >= args.lines and branches >= args.branches else 1


if __name__ == "__main__":
    sys.exit(main())
