-- Issue 21 point 3: the outflow forecasts read each account's booked business entries of its
-- last FORECAST_LOOKBACK_DAYS (storage/forecasts.py, _ENTRY_SPANS and _ENTRY_OUTFLOWS): its first
-- and last booking dates and the days after its through day less the lookback, by index probes
-- per account. Without this index the read grouped every entry of the ledger's whole history on
-- each recompute. Partial: our own transfers (statement_entry_own_idx) and pending entries are not
-- in it; the amount and direction are, so the read is an index-only scan.
CREATE INDEX IF NOT EXISTS statement_entry_book_idx
    ON statement_entry (account_id, booking_date)
    INCLUDE (direction, amount_usd)
    WHERE status = 'BOOK' AND own_transfer IS NULL AND booking_date IS NOT NULL;
