-- Issue 17 point 2 (docs/decisions.md, "Outflow forecast"): each account's forecast of its next
-- business day's gross outflow, computed by the VaR recompute from its booked debits (or its
-- closes), with the investment book's maturities on that day kept apart as known inflows. A
-- recompute of the same day replaces its row; shards load the newest for_date of an account.
CREATE TABLE IF NOT EXISTS forecast_result (
    id                   bigserial PRIMARY KEY,
    account_id           varchar(64)   NOT NULL REFERENCES account (account_id),
    for_date             date          NOT NULL,
    outflow_usd          numeric(20,4) NOT NULL CHECK (outflow_usd >= 0),
    method               varchar(64)   NOT NULL,
    expected_inflows_usd numeric(20,4) NOT NULL DEFAULT 0 CHECK (expected_inflows_usd >= 0),
    computed_ts          timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT forecast_result_uq UNIQUE (account_id, for_date)
);
