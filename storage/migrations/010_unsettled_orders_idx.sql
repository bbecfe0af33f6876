-- Issue 21 point 1: every batch of a shard reads its accounts' unsettled orders (storage/orders.py,
-- open_orders: sums per account and status). An order stays unsettled until the bank's booked
-- debit settles it, so an account sweeping several times a day holds dozens; 006's index on
-- account_id alone sent each of them to a heap page of its own (2.8 ms for 11 accounts and 1,026
-- orders). With the status, amount and cut-off in the index the read is an index-only scan
-- (0.24 ms for 485). It replaces 006's index: same predicate, same leading column.
CREATE INDEX IF NOT EXISTS sweep_order_unsettled_idx
    ON sweep_order (account_id, status)
    INCLUDE (amount_usd, cutoff_utc)
    WHERE status IN ('AWAITING_APPROVAL', 'NEW', 'SENT', 'ACK');
DROP INDEX IF EXISTS sweep_order_open_idx;
