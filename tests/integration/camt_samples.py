"""Small, valid USD statements for accounts a test registers (the public samples are EUR/CHF/...)."""

from __future__ import annotations

import uuid
from typing import Any


def camt053(account: str, closing_available: str = "10000000.00", booked: str = "9000000.00",
            day: str = "2025-06-09") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">
  <BkToCstmrStmt>
    <GrpHdr><MsgId>MSG-{uuid.uuid4().hex[:12]}</MsgId><CreDtTm>{day}T23:00:00Z</CreDtTm></GrpHdr>
    <Stmt>
      <Id>STMT-1</Id><CreDtTm>{day}T23:00:00Z</CreDtTm>
      <Acct><Id><Othr><Id>{account}</Id></Othr></Id></Acct>
      <Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="USD">{booked}</Amt>
        <CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>{day}</Dt></Dt></Bal>
      <Bal><Tp><CdOrPrtry><Cd>CLAV</Cd></CdOrPrtry></Tp><Amt Ccy="USD">{closing_available}</Amt>
        <CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>{day}</Dt></Dt></Bal>
    </Stmt>
  </BkToCstmrStmt>
</Document>
""".encode()


def finastra(account: str, available: str = "2,500,000.00", ledger: str = "2,400,000.00") -> bytes:
    return (f'{{"items": [{{"id": "{account}", "currency": "USD", "type": "CURRENT", '
            f'"ledgerBalance": "{ledger}", "availableBalance": "{available}", '
            f'"balanceAsOn": "2025-06-10T12:00:00Z"}}], '
            f'"_meta": {{"total": 1}}}}').encode()


# ------------------------------------------------------------------------------------------------
# Statement entries (Ntry), for any message and version: what tests of StatementEntry parsing build
# ------------------------------------------------------------------------------------------------

ROOTS = {"052": ("BkToCstmrAcctRpt", "Rpt"), "053": ("BkToCstmrStmt", "Stmt"),
         "054": ("BkToCstmrDbtCdtNtfctn", "Ntfctn")}


def tx(end_to_end: str | None = None, instr: str | None = None, amount: str | None = None) -> str:
    """One ``NtryDtls/TxDtls`` with the references given (none: a TxDtls without Refs), and the
    remittance and party details a bank adds, which the parser must drop."""
    refs = "".join(f"<{tag}>{value}</{tag}>" for tag, value in (("InstrId", instr), ("EndToEndId", end_to_end))
                   if value is not None)
    return ((f"<Refs><MsgId>M</MsgId>{refs}<TxId>T</TxId></Refs>" if refs else "")
            + (f'<Amt Ccy="USD">{amount}</Amt><CdtDbtInd>DBIT</CdtDbtInd>' if amount else "")
            + "<RltdPties><Cdtr><Nm>Counterparty</Nm></Cdtr></RltdPties><RmtInf><Ustrd>Invoice 1</Ustrd></RmtInf>")


def ntry(version: str, *, amount: str = "250000.00", ccy: str = "USD", sign: str = "DBIT", status: str = "BOOK",
         status_form: str | None = None, booking: str | None = "<Dt>2025-06-09</Dt>",
         value: str | None = "<Dt>2025-06-09</Dt>", acct_svcr_ref: str | None = None, ntry_ref: str | None = None,
         txs: list[str] | None = None) -> str:
    """One ``Ntry`` as version ``version`` writes it: ``Sts`` as text up to ``.06``, ``Sts/Cd`` from ``.07``
    (``status_form`` "text" | "code" | "prtry" forces one). ``txs``: the ``TxDtls`` bodies (:func:`tx`)."""
    form = status_form or ("text" if int(version) <= 6 else "code")
    sts = {"text": status, "code": f"<Cd>{status}</Cd>", "prtry": f"<Prtry>{status}</Prtry>"}[form]
    details = "".join(f"<TxDtls>{body}</TxDtls>" for body in (txs or []))
    return (
        (f"<NtryRef>{ntry_ref}</NtryRef>" if ntry_ref else "")
        + f'<Amt Ccy="{ccy}">{amount}</Amt><CdtDbtInd>{sign}</CdtDbtInd><Sts>{sts}</Sts>'
        + (f"<BookgDt>{booking}</BookgDt>" if booking else "")
        + (f"<ValDt>{value}</ValDt>" if value else "")
        + (f"<AcctSvcrRef>{acct_svcr_ref}</AcctSvcrRef>" if acct_svcr_ref else "")
        + "<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>ICDT</Cd><SubFmlyCd>DMCT</SubFmlyCd></Fmly></Domn></BkTxCd>"
        + (f"<NtryDtls>{details}</NtryDtls>" if details else "")
        + "<AddtlNtryInf>Sweep</AddtlNtryInf>"
    ).join(("<Ntry>", "</Ntry>"))


def camt_with_entries(message: str, version: str, account: str, entries: list[str], *, balances: str = "",
                      msg_id: str | None = None, created: str | None = "2025-06-10T06:00:00Z",
                      block_id: str = "B-1") -> bytes:
    """A camt.05X.001.``version`` of one block for ``account`` with these ``Ntry`` (:func:`ntry`) after
    ``balances`` (raw ``Bal`` XML; a camt.053 needs one, a camt.054 may have none)."""
    root, block = ROOTS[message]
    header = (f"<GrpHdr><MsgId>{msg_id or 'MSG-' + uuid.uuid4().hex[:12]}</MsgId>"
              + (f"<CreDtTm>{created}</CreDtTm>" if created else "") + "</GrpHdr>")
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.{message}.'
            f'001.{version}"><{root}>{header}<{block}><Id>{block_id}</Id>'
            f"<Acct><Id><Othr><Id>{account}</Id></Othr></Id></Acct>{balances}{''.join(entries)}"
            f"</{block}></{root}></Document>").encode()


def closing_balance(amount: str = "9000000.00", day: str = "2025-06-09") -> str:
    """A ``CLBD`` ``Bal``, for a camt.053 (which needs one)."""
    return (f'<Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="USD">{amount}</Amt>'
            f"<CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>{day}</Dt></Dt></Bal>")


def finastra_statement(account: str | None, items: list[dict[str, Any]]) -> bytes:
    """A Finastra account statement page: ``items`` with ``accountId`` set to ``account`` (when given)."""
    import json

    return json.dumps({"items": [({"accountId": account} if account else {}) | item for item in items],
                       "_meta": {"itemCount": len(items)}}).encode()
