"""Bank-file memory benchmark: ``.venv/bin/python -m bench.bank_files [--mb 50]``.

Why: a statement of entries used to be read whole (588 MB of memory for a 50 MB camt.053 through
``ingest``); the parser now reads incrementally and drops every entry once complete. This prints
what a large statement costs, so a regression shows as a number:

1. the parser alone (``schemas.camt.read_camt`` on the open file), in a fresh subprocess: peak RSS
   growth over the same interpreter with the modules imported (``resource.getrusage``), the
   tracemalloc peak of the parse, and the time;
2. ``treasury-orch ingest --dry-run FILE`` end to end, in a subprocess: its peak RSS and time, next to
   the peak RSS of ``treasury-orch --help`` (the CLI's own footprint).

The statement is generated (:func:`write_statement`) into a temporary directory and removed after.
``write_statement`` is also what ``tests/unit/test_camt_memory.py`` measures, on the same file shape.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Final

CAMT053: Final = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.{version:02d}"
HEAD: Final = "urn:iso:std:iso:20022:tech:xsd:head.001.001.02"
ACCOUNT: Final = "DE89370400440532013000"
BALANCES: Final = (("OPBD", "1000000.00", "CRDT"), ("CLBD", "1250000.50", "CRDT"), ("CLAV", "1200000.00", "CRDT"))

# What a child process reports: peak RSS before and after parsing, in KiB (Linux ru_maxrss).
_PROBE: Final = """
import json, resource, sys, time, tracemalloc
from schemas.camt import read_camt
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
trace = sys.argv[2] == "1"
if trace:
    tracemalloc.start()
start = time.perf_counter()
with open(sys.argv[1], "rb") as source:
    message = read_camt(source)
seconds = time.perf_counter() - start
peak_traced = tracemalloc.get_traced_memory()[1] if trace else None
print(json.dumps({"base_kib": base, "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "traced_peak_bytes": peak_traced, "seconds": seconds, "events": len(message.events),
                  "entries": message.entries}))
"""


def _entry(number: int) -> bytes:
    """One booked entry with a transaction detail and remittance text, about 1 KB as banks write them."""
    return (
        f"<Ntry><NtryRef>{number}</NtryRef><Amt Ccy=\"USD\">{number % 9973}.{number % 100:02d}</Amt>"
        f"<CdtDbtInd>{'DBIT' if number % 3 else 'CRDT'}</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>"
        f"<BookgDt><Dt>2024-03-01</Dt></BookgDt><ValDt><Dt>2024-03-01</Dt></ValDt>"
        f"<AcctSvcrRef>REF-{number:012d}</AcctSvcrRef>"
        "<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd>"
        f"<NtryDtls><TxDtls><Refs><EndToEndId>E2E-{number:012d}</EndToEndId>"
        f"<TxId>TX-{number:012d}</TxId></Refs>"
        f"<Amt Ccy=\"USD\">{number % 9973}.{number % 100:02d}</Amt><CdtDbtInd>CRDT</CdtDbtInd>"
        "<RltdPties><Dbtr><Pty><Nm>Example Counterparty Trading GmbH</Nm><PstlAdr><StrtNm>Hauptstrasse</StrtNm>"
        "<BldgNb>1</BldgNb><PstCd>10115</PstCd><TwnNm>Berlin</TwnNm><Ctry>DE</Ctry></PstlAdr></Pty></Dbtr>"
        "<DbtrAcct><Id><IBAN>DE02120300000000202051</IBAN></Id></DbtrAcct></RltdPties>"
        "<RmtInf><Ustrd>Invoice 2024-03 settlement for goods and services delivered under contract "
        f"{number:08d}; thank you for your business</Ustrd></RmtInf></TxDtls></NtryDtls>"
        "<AddtlNtryInf>SEPA credit transfer received</AddtlNtryInf></Ntry>"
    ).encode()


def write_statement(out: BinaryIO, target_bytes: int, *, version: int = 8, app_header: bool = False) -> int:
    """A camt.053 of one statement, three balances and as many entries as fill ``target_bytes``.

    Written in pieces, never held whole, so the generator itself stays small. Returns the entries written.
    """
    balances = "".join(
        f"<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp><Amt Ccy=\"USD\">{amount}</Amt>"
        f"<CdtDbtInd>{sign}</CdtDbtInd><Dt><Dt>2024-03-01</Dt></Dt></Bal>"
        for code, amount, sign in BALANCES
    )
    head = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        + ("<Envelope><AppHdr xmlns=\"" + HEAD + "\"><BizMsgIdr>BENCH-1</BizMsgIdr>"
           f"<MsgDefIdr>camt.053.001.{version:02d}</MsgDefIdr></AppHdr>" if app_header else "")
        + f'<Document xmlns="{CAMT053.format(version=version)}"><BkToCstmrStmt>'
        "<GrpHdr><MsgId>BENCH-1</MsgId><CreDtTm>2024-03-02T06:00:00Z</CreDtTm></GrpHdr>"
        f"<Stmt><Id>BENCH-STMT-1</Id><Acct><Id><IBAN>{ACCOUNT}</IBAN></Id></Acct>{balances}"
    ).encode()
    tail = ("</Stmt></BkToCstmrStmt></Document>" + ("</Envelope>" if app_header else "")).encode()
    written = out.write(head)
    entries = 0
    while written + len(tail) < target_bytes:
        written += out.write(_entry(entries))
        entries += 1
    out.write(tail)
    return entries


def probe_parser(path: Path, *, trace: bool = False) -> dict[str, float]:
    """Parse ``path`` in a fresh interpreter and return its memory and time figures.

    The child runs without coverage even inside a coverage run (no ``COVERAGE_*`` variables): the
    tracer's own tables are not the parser's memory, and it made the 50 MB parse four times slower
    (the parser's lines are covered by the camt tests, on small files).
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("COVERAGE_")}
    result = subprocess.run([sys.executable, "-c", _PROBE, str(path), "1" if trace else "0"], check=True,  # noqa: S603
                            capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], env=env)
    figures: dict[str, float] = json.loads(result.stdout)
    return figures


def _child_peak_kib(command: list[str]) -> tuple[int, float, str]:
    """Run ``command`` in a fresh process; its peak RSS (KiB), wall time and stdout."""
    start = time.perf_counter()
    # wait4 gives this child's own rusage (RUSAGE_CHILDREN would be the maximum over every child so far)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # noqa: S603 - our own CLI
    assert process.stdout is not None
    output = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{command} exited {process.returncode}")
    return usage.ru_maxrss, time.perf_counter() - start, output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mb", type=float, default=50.0, help="statement size in MB (default 50)")
    args = parser.parse_args(argv)
    target = int(args.mb * 1_000_000)
    directory = Path(tempfile.mkdtemp(prefix="bank-files-bench-"))
    try:
        path = directory / "statement.camt053.xml"
        with path.open("wb") as out:
            entries = write_statement(out, target)
        size = path.stat().st_size
        print(f"statement: {size / 1e6:.1f} MB, {entries} entries, 3 balances ({path.name})")

        plain = probe_parser(path)
        growth = (plain["peak_kib"] - plain["base_kib"]) / 1024
        print(f"parser (read_camt on the open file): peak RSS {plain['peak_kib'] / 1024:.1f} MiB, "
              f"growth while parsing {growth:.1f} MiB, {plain['seconds']:.2f} s, "
              f"{plain['events']:.0f} events, {plain['entries']:.0f} entries seen")
        traced = probe_parser(path, trace=True)
        print(f"parser under tracemalloc: peak of Python allocations {traced['traced_peak_bytes'] / 2**20:.2f} MiB "
              f"({traced['seconds']:.2f} s with tracing)")

        cli = shutil.which("treasury-orch") or str(Path(sys.executable).with_name("treasury-orch"))
        help_kib, _, _ = _child_peak_kib([cli, "--help"])
        ingest_kib, seconds, output = _child_peak_kib([cli, "ingest", "--dry-run", str(path)])
        lines = len(output.splitlines())
        print(f"treasury-orch ingest --dry-run: peak RSS {ingest_kib / 1024:.1f} MiB in {seconds:.2f} s "
              f"({lines} events printed); treasury-orch --help alone: {help_kib / 1024:.1f} MiB; "
              f"so the file costs {(ingest_kib - help_kib) / 1024:.1f} MiB")
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"this benchmark process: peak RSS {own:.1f} MiB (the generator writes in pieces)")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
