-- Idempotency keys of the REST tier (issue 9): a POST retried with the same Idempotency-Key gets
-- the first answer back instead of acting twice. Rows live 24 h (expires_ts) and are purged on write.
CREATE TABLE IF NOT EXISTS idempotency_key (
    -- the caller the key belongs to; '' until callers are authenticated (then the JWT subject),
    -- so two callers never see each other's keys
    scope           varchar(200) NOT NULL DEFAULT '',
    idem_key        varchar(40)  NOT NULL,
    -- sha-256 of method, path and body: the same key with another request is refused
    request_hash    char(64)     NOT NULL,
    method          varchar(8)   NOT NULL,
    path            text         NOT NULL,
    -- null while the first request is in flight; a duplicate then gets 409
    status_code     integer,
    response_body   bytea,
    content_type    text,
    created_ts      timestamptz  NOT NULL DEFAULT now(),
    completed_ts    timestamptz,
    expires_ts      timestamptz  NOT NULL,
    CONSTRAINT idempotency_key_pk PRIMARY KEY (scope, idem_key)
);
CREATE INDEX IF NOT EXISTS idempotency_key_expires_idx ON idempotency_key (expires_ts);
