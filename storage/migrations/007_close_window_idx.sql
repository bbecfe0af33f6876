-- Issue 21 point 3: the VaR recompute reads each account's newest closes (storage/history.py,
-- _WINDOW_CLOSES: the latest CLBD of each UTC day, newest first, window + 1 of them). Balances
-- arrive day after day, so one account's closes lie on as many heap pages as it has days; this
-- index holds them together, in the read's order, with the close itself, so the read is an
-- index-only scan that stops after window + 1 days. Partial: intraday balances (most rows) are
-- not in it, so the shards' inserts of them do not maintain it.
CREATE INDEX IF NOT EXISTS balance_close_window_idx
    ON balance (account_id, ((as_of_ts AT TIME ZONE 'UTC')::date) DESC, as_of_ts DESC, id DESC)
    INCLUDE (booked_usd)
    WHERE balance_code = 'CLBD' AND booked_usd IS NOT NULL;
