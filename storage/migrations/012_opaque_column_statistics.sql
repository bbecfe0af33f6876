-- Issue 21: no planner statistics for the ledger's opaque documents. ANALYZE (autovacuum's, after
-- every burst of rows) sorts its 30,000-row sample of each column to find common values and
-- histogram bounds; for these columns that means comparing jsonb documents and 600-800 byte
-- strings, and no query of ours filters, joins or sorts on them: they are stored to be read back
-- whole (the encrypted raw event and entry, the signed payload and its printed head, the decision's
-- inputs, the settlement's proof, a cached REST answer). Measured on a stack after bench/pipeline
-- (49,000 orders, 230,000 balances): ANALYZE sweep_order 600 -> 190 ms of CPU, balance 275 -> 196 ms,
-- statement_entry 91 -> 65 ms. The columns' other statistics (null fraction, width) go with them:
-- nothing reads those either. A column a query starts to filter on gets its statistics back with
-- SET STATISTICS -1 (the default target) in the migration that adds the query.
ALTER TABLE balance ALTER COLUMN raw_event SET STATISTICS 0;
ALTER TABLE sweep_order
    ALTER COLUMN payload SET STATISTICS 0,
    ALTER COLUMN payload_head SET STATISTICS 0,
    ALTER COLUMN decision SET STATISTICS 0,
    ALTER COLUMN settlement SET STATISTICS 0;
ALTER TABLE statement_entry ALTER COLUMN raw_entry SET STATISTICS 0;
ALTER TABLE idempotency_key ALTER COLUMN response_body SET STATISTICS 0;
