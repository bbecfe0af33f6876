-- Issue 16 (time sanity): an event_id sent again with different content is a conflict, not a
-- duplicate. The raw event is stored encrypted, so the ledger keeps a fingerprint of the
-- balance-relevant content beside it: sha-256 (hex) of the canonical form built by
-- storage.balances.BalanceContent.fingerprint (as_of_ts, kind, balance_code, the amounts as sent,
-- currency, projection). Rows stored before this migration keep NULL: their repeats are treated
-- as plain duplicates, as they were before.
ALTER TABLE balance ADD COLUMN IF NOT EXISTS content_sha256 char(64);
