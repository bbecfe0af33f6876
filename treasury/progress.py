"""A one-line text progress bar for long CLI jobs (VaR recompute, replay): on stderr, redrawn in place."""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

Progress = Callable[[int, int], None]


def text_progress(stream: TextIO, label: str, unit: str, width: int = 30) -> Progress:
    """``show(done, total)`` draws ``label [####....] done/total unit`` and ends the line when done."""
    def show(done: int, total: int) -> None:
        filled = width * done // max(total, 1)
        stream.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {unit}")
        if done >= total:
            stream.write("\n")
        stream.flush()

    return show
