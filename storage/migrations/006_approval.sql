-- Issue 20 point 1, four-eyes approval of large sweeps (docs/approval.md).

-- An order of at least APPROVAL_THRESHOLD_USD is written AWAITING_APPROVAL (17 characters: the
-- column was varchar(8)); released to NEW after APPROVALS_REQUIRED distinct approvals, else
-- REJECTED or EXPIRED at its cut-off.
ALTER TABLE sweep_order ALTER COLUMN status TYPE varchar(24);
ALTER TABLE sweep_order DROP CONSTRAINT IF EXISTS sweep_order_status_check;
ALTER TABLE sweep_order ADD CONSTRAINT sweep_order_status_check
    CHECK (status IN ('AWAITING_APPROVAL', 'NEW', 'SENT', 'ACK', 'FAILED', 'SETTLED', 'REJECTED', 'EXPIRED'));
-- approvals_required: what the order needed when it was written (NULL: it needed none);
-- released_ts / rejected_ts / expired_ts: when it left AWAITING_APPROVAL, and how;
-- release_claimed_ts: when a coordinator took a released order to publish (one coordinator only).
ALTER TABLE sweep_order ADD COLUMN IF NOT EXISTS approvals_required smallint
    CHECK (approvals_required IS NULL OR approvals_required >= 1);
ALTER TABLE sweep_order DROP CONSTRAINT IF EXISTS sweep_order_awaiting_needs_count;
ALTER TABLE sweep_order ADD CONSTRAINT sweep_order_awaiting_needs_count
    CHECK (status <> 'AWAITING_APPROVAL' OR approvals_required IS NOT NULL);
ALTER TABLE sweep_order ADD COLUMN IF NOT EXISTS released_ts timestamptz;
ALTER TABLE sweep_order ADD COLUMN IF NOT EXISTS rejected_ts timestamptz;
ALTER TABLE sweep_order ADD COLUMN IF NOT EXISTS expired_ts timestamptz;
ALTER TABLE sweep_order ADD COLUMN IF NOT EXISTS release_claimed_ts timestamptz;

-- Pending: an order awaiting approval counts as much as a NEW one (001's index widened).
DROP INDEX IF EXISTS sweep_order_open_idx;
CREATE INDEX IF NOT EXISTS sweep_order_open_idx ON sweep_order (account_id)
    WHERE status IN ('AWAITING_APPROVAL', 'NEW', 'SENT', 'ACK');
CREATE INDEX IF NOT EXISTS sweep_order_awaiting_idx ON sweep_order (cutoff_utc) WHERE status = 'AWAITING_APPROVAL';

-- The pull's order (GET /sweep-intent?after=): a release sequence, assigned when an order becomes
-- pullable (written NEW, or released from AWAITING_APPROVAL), not when it was written. Paging by the
-- ledger id would skip an order released after a client paged past its id. Rows written before
-- this migration keep their id as their place, and the sequence starts after the highest id, so a
-- cursor issued before the migration still means the same rows.
CREATE SEQUENCE IF NOT EXISTS sweep_order_release_seq AS bigint;
ALTER TABLE sweep_order ADD COLUMN IF NOT EXISTS release_seq bigint;
UPDATE sweep_order SET release_seq = id WHERE release_seq IS NULL;
SELECT setval('sweep_order_release_seq', COALESCE((SELECT max(id) FROM sweep_order), 0) + 1, false);
CREATE UNIQUE INDEX IF NOT EXISTS sweep_order_release_seq_uq ON sweep_order (release_seq)
    WHERE release_seq IS NOT NULL;

-- Every writer gets the sequence the same way, here: under one transaction-scoped advisory lock
-- held until commit, so release sequences commit in the order they are assigned and a reader never
-- sees a later one while an earlier one may still appear (a pull would skip it for good). The
-- coordinator's inserts and the approvals' releases are the only writers today; a new one cannot
-- forget. 2125791238 = 0x7EB5_0006, the key storage/orders.py names (RELEASE_LOCK_KEY).
CREATE OR REPLACE FUNCTION sweep_order_assign_release_seq() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.status = 'NEW' AND NEW.release_seq IS NULL THEN
        PERFORM pg_advisory_xact_lock(2125791238);
        NEW.release_seq := nextval('sweep_order_release_seq');
    END IF;
    RETURN NEW;
END
$fn$;
DROP TRIGGER IF EXISTS sweep_order_release_seq_trg ON sweep_order;
CREATE TRIGGER sweep_order_release_seq_trg BEFORE INSERT OR UPDATE OF status ON sweep_order
    FOR EACH ROW EXECUTE FUNCTION sweep_order_assign_release_seq();

-- The audit trail of approvals: who (the JWT subject), when, what and why. One approval per person
-- and order (the unique key is what makes "distinct subjects" hold under concurrent requests).
CREATE TABLE IF NOT EXISTS order_approval (
    id       bigserial PRIMARY KEY,
    order_id varchar(64)  NOT NULL REFERENCES sweep_order (order_id),
    subject  varchar(256) NOT NULL,
    verdict  varchar(8)   NOT NULL CHECK (verdict IN ('APPROVE', 'REJECT')),
    comment  text         CHECK (comment IS NULL OR length(comment) <= 1000),
    ts       timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT order_approval_uq UNIQUE (order_id, subject, verdict)
);
