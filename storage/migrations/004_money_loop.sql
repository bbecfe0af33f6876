-- Issue 16, the money loop (docs/settlement.md): the bank's statement entries, the settlement of
-- orders by their booked debit, and the investment book.

-- Every entry a bank reported, once (account_id, entry_id). raw_entry is the entry as received,
-- encrypted like balance.raw_event; content_sha256 tells a re-sent entry (a duplicate) from an id
-- re-used with other content (a conflict). own_transfer marks our own money movements, which
-- VaR leaves out of the operating flows: SWEEP (the debit that settled order_id) or MATURITY (the
-- credit that brought order_id's investment back).
CREATE TABLE IF NOT EXISTS statement_entry (
    id             bigserial PRIMARY KEY,
    account_id     varchar(64)   NOT NULL REFERENCES account (account_id),
    entry_id       varchar(128)  NOT NULL,
    direction      varchar(4)    NOT NULL CHECK (direction IN ('CRDT', 'DBIT')),
    status         varchar(4)    NOT NULL CHECK (status IN ('BOOK', 'PDNG', 'INFO', 'FUTR')),
    amount_usd     numeric(24,6) NOT NULL CHECK (amount_usd > 0),
    currency       char(3)       NOT NULL,
    booking_date   date,
    booked_ts      timestamptz,
    value_date     date,
    refs           varchar(140)[] NOT NULL DEFAULT '{}',
    bank_reference varchar(140),
    own_transfer   varchar(8)    CHECK (own_transfer IN ('SWEEP', 'MATURITY')),
    order_id       varchar(64),
    matched_by     varchar(24),
    content_sha256 char(64)      NOT NULL,
    raw_entry      jsonb         NOT NULL,
    received_ts    timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT statement_entry_uq UNIQUE (account_id, entry_id),
    CONSTRAINT statement_entry_own_has_order CHECK ((own_transfer IS NULL) = (order_id IS NULL))
);
CREATE INDEX IF NOT EXISTS statement_entry_own_idx ON statement_entry (account_id, booking_date)
    WHERE own_transfer IS NOT NULL;
-- No debit settles two orders (one row, one order_id) and no order is settled by two debits, nor
-- matured by two credits.
CREATE UNIQUE INDEX IF NOT EXISTS statement_entry_order_uq ON statement_entry (order_id, own_transfer)
    WHERE order_id IS NOT NULL;

ALTER TABLE sweep_order DROP CONSTRAINT IF EXISTS sweep_order_status_check;
ALTER TABLE sweep_order ADD CONSTRAINT sweep_order_status_check
    CHECK (status IN ('NEW', 'SENT', 'ACK', 'FAILED', 'SETTLED'));
-- settled_ts: when we learned it; booked_ts: from when a balance shows the debit (the entry's);
-- settlement: the entry's id, bank reference, booking date and how it was matched.
ALTER TABLE sweep_order ADD COLUMN IF NOT EXISTS settled_ts timestamptz;
ALTER TABLE sweep_order ADD COLUMN IF NOT EXISTS booked_ts timestamptz;
ALTER TABLE sweep_order ADD COLUMN IF NOT EXISTS settlement jsonb;
-- Pending until settled: every unsettled order (001's sweep_order_open_idx), and a settled one for
-- balances older than its booking (this one).
CREATE INDEX IF NOT EXISTS sweep_order_settled_idx ON sweep_order (account_id, booked_ts) WHERE status = 'SETTLED';

-- A booked entry that names an order but cannot settle it: another amount, or an order that
-- failed or is settled already. Kept with both figures; the metric counts the rows.
CREATE TABLE IF NOT EXISTS settlement_break (
    id                bigserial PRIMARY KEY,
    account_id        varchar(64)   NOT NULL REFERENCES account (account_id),
    entry_id          varchar(128)  NOT NULL,
    order_id          varchar(64),
    kind              varchar(24)   NOT NULL,
    order_amount_usd  numeric(20,4),
    entry_amount_usd  numeric(24,6) NOT NULL,
    detail            text          NOT NULL,
    detected_ts       timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT settlement_break_uq UNIQUE (account_id, entry_id)
);

-- The investment book: one row per settled sweep. OVERDUE is not stored: an OPEN investment whose
-- maturity date is more than MATURITY_GRACE_DAYS past is reported as such when read.
CREATE TABLE IF NOT EXISTS investment (
    id                 bigserial PRIMARY KEY,
    order_id           varchar(64)   NOT NULL REFERENCES sweep_order (order_id),
    account_id         varchar(64)   NOT NULL REFERENCES account (account_id),
    product            varchar(16)   NOT NULL,
    principal_usd      numeric(20,4) NOT NULL CHECK (principal_usd > 0),
    value_date         date          NOT NULL,
    maturity_date      date          NOT NULL CHECK (maturity_date > value_date),
    status             varchar(8)    NOT NULL DEFAULT 'OPEN' CHECK (status IN ('OPEN', 'MATURED')),
    matured_entry_id   varchar(128),
    matured_amount_usd numeric(24,6),
    matured_booked_ts  timestamptz,
    created_ts         timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT investment_order_uq UNIQUE (order_id)
);
CREATE INDEX IF NOT EXISTS investment_open_idx ON investment (account_id, maturity_date) WHERE status = 'OPEN';
CREATE INDEX IF NOT EXISTS investment_maturity_idx ON investment (maturity_date, product);
