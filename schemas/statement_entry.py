"""``StatementEntry``: one booked (or pending) movement on an account, as the bank reports it.

Why a contract of its own: a balance says how much is there, an entry says what moved and why.
Entries are how the orchestrator learns that a sweep it ordered really left the account (the
bank's booked debit carrying the order id in ``EndToEndId``), that an investment came back (the
maturity's credit), and which part of a day's change of the close was our own doing (VaR is of
operating flows, not of our transfers). They come from camt.052/053/054 ``Ntry`` elements and from
Finastra's account statement items (``schemas.camt``, ``schemas.finastra``), from files,
``POST /balances`` and Kafka.

On Kafka an entry travels on ``balance_events`` under the account's key, like its balances, so
the shard that owns the account applies both in one order; the ``schema_version`` header
(``statement_entry/1.x.y``) tells the two contracts apart (``schemas.balance_record``).

``booked_ts`` is the moment from which a balance can show the entry: the bank's booking
date-time when it gives one; for a booking *date* alone, the report's creation time when that
falls on the booking date, else the end of the booking date (UTC). A later bound is the safe
side: a sweep counts as pending for every balance taken before it (``actors.account_state``).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.types import AccountId, Currency, EventId, TraceId, UtcDatetime
from treasury.money import MAX_ABS_USD

EntryAmount = Annotated[
    Decimal, Field(gt=0, le=MAX_ABS_USD, max_digits=24, decimal_places=6, allow_inf_nan=False,
                   description="Amount of the entry, always positive; ``direction`` gives the sign")
]
Reference = Annotated[str, Field(min_length=1, max_length=140)]

#: What banks write in a reference field that must hold something when they have no reference:
#: ``NONREF`` (SWIFT MT940's word, carried into camt by banks that convert), ``NOTPROVIDED``
#: (ISO's and the EPC's for an ``EndToEndId`` its initiator gave none), and the plain words.
PLACEHOLDER_REFERENCES: Final = frozenset({"NONREF", "NOTPROVIDED", "NOT PROVIDED", "NONE", "N/A"})


def names_nothing(reference: str) -> bool:
    """True for a reference that identifies nothing: a placeholder, or one without a letter or a
    digit other than zero (``-``, ``//``, ``0000``).

    Why it matters: an entry's id is taken from its bank reference when it has one, so the same
    entry re-sent is recognised. Many entries, on one day and every day, carry ``NONREF``; taken as
    a reference, the second of them would be dropped as the first one re-sent.
    """
    text = reference.strip().upper()
    return text in PLACEHOLDER_REFERENCES or not any(c.isalnum() and c != "0" for c in text)


class EntryDirection(StrEnum):
    """ISO 20022 ``CdtDbtInd``: money in (``CRDT``) or out (``DBIT``) of the account."""

    CRDT = "CRDT"
    DBIT = "DBIT"


class EntryStatus(StrEnum):
    """ISO 20022 entry status (``Sts``, ExternalEntryStatus1Code): only ``BOOK`` moved money."""

    BOOK = "BOOK"
    PDNG = "PDNG"
    INFO = "INFO"
    FUTR = "FUTR"


class StatementEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, title="StatementEntry")

    entry_id: EventId = Field(description="Unique per account and stable: the same entry re-sent "
                                          "(a file sent again, a camt.052 then its camt.053) has the same id")
    account_id: AccountId
    direction: EntryDirection
    status: EntryStatus = EntryStatus.BOOK
    amount_usd: EntryAmount
    currency: Currency = "USD"
    booking_date: date | None = Field(default=None, description="BookgDt; required when status is BOOK")
    booked_ts: UtcDatetime | None = Field(
        default=None, description="From when a balance can show the entry (module doc); required when BOOK")
    value_date: date | None = Field(default=None, description="ValDt: when the money is value-dated")
    end_to_end_id: Reference | None = Field(default=None, description="camt TxDtls/Refs/EndToEndId")
    instr_id: Reference | None = Field(default=None, description="camt TxDtls/Refs/InstrId")
    bank_reference: Reference | None = Field(
        default=None, description="The bank's own reference: camt AcctSvcrRef, Finastra backOfficeReference")
    customer_references: list[Reference] = Field(
        default_factory=list, max_length=8, description="Other references the payer set: Finastra ref1, ref2")
    balance_after_usd: Annotated[Decimal, Field(ge=-MAX_ABS_USD, le=MAX_ABS_USD, max_digits=24,
                                                decimal_places=6, allow_inf_nan=False)] | None = Field(
        default=None, description="The running balance after the entry, when the bank states it (Finastra balance)")
    source: Annotated[str, Field(max_length=64)] | None = Field(
        default=None, description="Where it came from: camt.053.001.08, finastra, ...")
    trace_id: TraceId | None = None

    @model_validator(mode="after")
    def _booked_has_dates(self) -> StatementEntry:
        if self.status is EntryStatus.BOOK and (self.booking_date is None or self.booked_ts is None):
            raise ValueError("a booked entry (status BOOK) needs booking_date and booked_ts")
        return self

    @property
    def order_references(self) -> list[str]:
        """Every reference that may carry one of our order ids, most specific first: the order id
        is what the Bank-Connector puts in pain.001's EndToEndId (docs/settlement.md)."""
        refs = [self.end_to_end_id, self.instr_id, *self.customer_references]
        return [r for r in refs if r]

    @property
    def signed_usd(self) -> Decimal:
        """The entry's effect on the balance: negative for a debit."""
        return -self.amount_usd if self.direction is EntryDirection.DBIT else self.amount_usd

    def content(self) -> dict[str, Any]:
        """What an entry id stands for: re-sent with other content under the same id is a conflict.

        The movement itself (direction, amount, currency, references), not how far the bank has got
        with it: the same entry is reported pending in a camt.052 and booked in the camt.053, with a
        booking time taken from each report's own creation time. Those are one entry, moving on."""
        return self.model_dump(mode="json", include={"entry_id", "account_id", "direction", "amount_usd", "currency",
                                                     "end_to_end_id", "instr_id", "bank_reference",
                                                     "customer_references"})
