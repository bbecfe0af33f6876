-- Issue 21 point 2: the Bank-Connector's pull (storage/orders.py, page_text_after) sends each
-- order as its signed payload's JSON text with "status" spliced in as the last key. Printing the
-- jsonb and cutting its closing brace on every pull was most of Postgres's time for a page
-- (0.72-1.09 ms for 100 orders); the head is printed once, when the order is written, and kept
-- with the row (0.33 ms a page, the same bytes). Generated, so no writer can let it drift from the
-- payload. NULL for a payload the splice does not fit (not a non-empty object, or already holding
-- a "status" key: no SweepOrder does): the pull merges those in jsonb as before.
ALTER TABLE sweep_order ADD COLUMN IF NOT EXISTS payload_head text GENERATED ALWAYS AS (
    CASE WHEN jsonb_typeof(payload) = 'object' AND payload <> '{}'::jsonb AND NOT payload ? 'status'
         THEN left(payload::text, -1) END
) STORED;
