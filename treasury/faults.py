"""Deliberate crash points for the chaos tests: a process dies exactly where a test says.

``TREASURY_CRASH_AT=<point>`` arms one point; ``TREASURY_CRASH_ONCE_FILE`` names a marker file
created just before dying, so the restarted process does not die again. Unset, this costs one
dictionary lookup.
"""

from __future__ import annotations

import os
from pathlib import Path


def crash_point(point: str) -> None:
    if os.environ.get("TREASURY_CRASH_AT") != point:
        return
    marker = os.environ.get("TREASURY_CRASH_ONCE_FILE")
    if marker:
        path = Path(marker)
        if path.exists():
            return
        path.write_text(point)
    os._exit(137)
