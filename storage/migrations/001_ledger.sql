-- The ledger of spec section 6: accounts, every balance event received, and sweep orders.
CREATE TABLE IF NOT EXISTS account (
    account_id      varchar(64) PRIMARY KEY,
    esg_pref        boolean       NOT NULL DEFAULT false,
    min_balance_usd numeric(20,4) NOT NULL DEFAULT 0 CHECK (min_balance_usd >= 0),
    aml_tags        jsonb         NOT NULL DEFAULT '{}'::jsonb,
    created_ts      timestamptz   NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS balance (
    id                     bigserial PRIMARY KEY,
    account_id             varchar(64)   NOT NULL REFERENCES account (account_id),
    event_id               varchar(128)  NOT NULL,
    as_of_ts               timestamptz   NOT NULL,
    kind                   varchar(16)   NOT NULL CHECK (kind IN ('PRIOR_DAY', 'INTRADAY')),
    balance_code           varchar(4),
    avail_usd              numeric(20,4),
    booked_usd             numeric(20,4),
    currency               char(3)       NOT NULL,
    projected_outflows_usd numeric(20,4),
    -- false: older than the account's position when it arrived; kept, but it moved nothing
    applied                boolean       NOT NULL,
    -- set once the decision this event led to (order or none) is durable; a replay re-decides
    -- exactly the events whose decision was not yet recorded
    decided_ts             timestamptz,
    raw_event              jsonb         NOT NULL,
    received_ts            timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT balance_account_event_uq UNIQUE (account_id, event_id)
);
CREATE INDEX IF NOT EXISTS balance_account_asof_idx ON balance (account_id, as_of_ts DESC);

CREATE TABLE IF NOT EXISTS sweep_order (
    id             bigserial PRIMARY KEY,
    order_id       varchar(64)   NOT NULL,
    decision_key   varchar(200)  NOT NULL,
    account_id     varchar(64)   NOT NULL REFERENCES account (account_id),
    amount_usd     numeric(20,4) NOT NULL CHECK (amount_usd > 0),
    product        varchar(16)   NOT NULL CHECK (product IN ('FED_RRP', 'TBILL_4W', 'CARBON_NOTE')),
    cutoff_utc     timestamptz   NOT NULL,
    status         varchar(8)    NOT NULL DEFAULT 'NEW' CHECK (status IN ('NEW', 'SENT', 'ACK', 'FAILED')),
    payload        jsonb         NOT NULL,
    decision       jsonb         NOT NULL,
    trace_id       varchar(64),
    created_ts     timestamptz   NOT NULL DEFAULT now(),
    sent_ts        timestamptz,
    acked_ts       timestamptz,
    failed_ts      timestamptz,
    failure_reason text,
    CONSTRAINT sweep_order_order_id_uq UNIQUE (order_id),
    CONSTRAINT sweep_order_decision_key_uq UNIQUE (decision_key)
);
CREATE INDEX IF NOT EXISTS sweep_order_open_idx ON sweep_order (account_id) WHERE status IN ('NEW', 'SENT', 'ACK');
CREATE INDEX IF NOT EXISTS sweep_order_new_idx ON sweep_order (id) WHERE status = 'NEW';

-- Results of the VaR engine; the shards read the latest per account.
CREATE TABLE IF NOT EXISTS var_result (
    id          bigserial PRIMARY KEY,
    account_id  varchar(64)   NOT NULL REFERENCES account (account_id),
    as_of       date          NOT NULL,
    window_days integer       NOT NULL CHECK (window_days > 0),
    confidence  numeric(6,5)  NOT NULL CHECK (confidence > 0 AND confidence < 1),
    days        integer       NOT NULL CHECK (days >= 0),
    var_usd     numeric(20,4),
    var_bps     double precision,
    es_usd      numeric(20,4),
    computed_ts timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT var_result_uq UNIQUE (account_id, as_of, window_days, confidence)
);
