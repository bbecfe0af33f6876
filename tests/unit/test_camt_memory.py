"""Bounded memory on a large statement (issue 19): a ~50 MB camt.053 of entries parses in flat memory.

The file is generated in a temporary directory (``bench.bank_files.write_statement``, written in
pieces) and parsed from the open file in a fresh interpreter, which reports its peak RSS before and
after the parse (``resource.getrusage``). Reading the file whole used to cost more than ten times
its size; the bound here (64 MiB of growth for 50 MB of XML) fails on any parser that holds the
file or its entries, and leaves room for allocator noise. ``bench/bank_files.py`` prints the figures.
"""

from __future__ import annotations

from pathlib import Path

from bench.bank_files import probe_parser, write_statement

SIZE = 50_000_000
MAX_GROWTH_KIB = 64 * 1024


def test_a_50mb_statement_parses_in_flat_memory(tmp_path: Path) -> None:
    path = tmp_path / "large.camt053.xml"
    with path.open("wb") as out:
        entries = write_statement(out, SIZE)
    assert path.stat().st_size >= SIZE * 0.99
    figures = probe_parser(path)
    assert figures["events"] == 3 and figures["entries"] == entries
    growth = figures["peak_kib"] - figures["base_kib"]
    assert growth < MAX_GROWTH_KIB, f"parsing {SIZE // 10**6} MB grew peak RSS by {growth / 1024:.1f} MiB"
