"""Small, valid USD statements for accounts a test registers (the public samples are EUR/CHF/...)."""

from __future__ import annotations

import uuid


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
