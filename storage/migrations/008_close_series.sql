-- Issue 21 point 3: each account's closing balances packed in one row, so that the VaR recompute
-- reads 100,000 rows instead of 26,000,000 (storage/history.py, _SERIES_TAIL).
--
-- close_series.closes holds one big-endian int8 per calendar day from first_day: the day's close
-- in 0.0001 USD, as _WINDOW_CLOSES made it before (the newest CLBD of the UTC day by as_of_ts,
-- then id), '\x8000000000000000' (int8's minimum) on a day without a close, and
-- '\x8000000000000001' for a close beyond int8's range (the reader then falls back to the exact
-- decimal read, as the cast's error made it do). The balance table stays the record: the series is
-- kept in step by the triggers below, in the same transaction as the rows that change it, and
-- close_series_refresh rebuilds any account's days from the rows.
--
-- STORAGE EXTERNAL (no compression): substring() of the newest days then fetches only the TOAST
-- chunks that hold them, so a read costs the window, not the account's whole history.
CREATE TABLE IF NOT EXISTS close_series (
    account_id varchar(64) PRIMARY KEY,
    first_day  date        NOT NULL,
    closes     bytea       NOT NULL
);
ALTER TABLE close_series ALTER COLUMN closes SET STORAGE EXTERNAL;

-- The days lo..hi of one account, rebuilt from its balance rows (the 007 index: one index-only
-- probe a day), the series widened to cover them. Locks the account's series row, so that two
-- writers of one account's closes apply one after the other.
CREATE OR REPLACE FUNCTION close_series_refresh(acct varchar, lo date, hi date) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    first  date;
    packed bytea;
    slots  integer;
    span   bytea;
BEGIN
    INSERT INTO close_series (account_id, first_day, closes) VALUES (acct, lo, ''::bytea)
        ON CONFLICT (account_id) DO NOTHING;
    SELECT s.first_day, s.closes INTO first, packed FROM close_series s WHERE s.account_id = acct FOR UPDATE;
    slots := octet_length(packed) / 8;
    IF slots = 0 THEN
        first := lo;
    END IF;
    IF lo < first THEN
        packed := decode(repeat('8000000000000000', first - lo), 'hex') || packed;
        first := lo;
        slots := octet_length(packed) / 8;
    END IF;
    IF hi > first + slots - 1 THEN
        packed := packed || decode(repeat('8000000000000000', hi - (first + slots - 1)), 'hex');
    END IF;
    SELECT string_agg(coalesce(int8send(c.units), '\x8000000000000000'::bytea), ''::bytea ORDER BY g.day)
      INTO span
      FROM generate_series(lo, hi, interval '1 day') AS g(day)
      LEFT JOIN LATERAL (
          SELECT CASE WHEN abs(b.booked_usd) < 922337203685477 THEN (b.booked_usd * 10000)::int8
                      ELSE -9223372036854775807 END AS units
          FROM balance b
          WHERE b.account_id = acct AND b.balance_code = 'CLBD' AND b.booked_usd IS NOT NULL
            AND (b.as_of_ts AT TIME ZONE 'UTC')::date = g.day::date
          ORDER BY b.as_of_ts DESC, b.id DESC
          LIMIT 1
      ) c ON true;
    packed := overlay(packed PLACING span FROM (lo - first) * 8 + 1 FOR octet_length(span));
    UPDATE close_series SET first_day = first, closes = packed WHERE account_id = acct;
END $$;

-- Inserted or deleted rows: each account's closes among them, once per statement (a shard's COPY
-- of a batch, a statement's day-end), accounts in order so that concurrent writers lock alike.
CREATE OR REPLACE FUNCTION close_series_after_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT account_id, min((as_of_ts AT TIME ZONE 'UTC')::date) AS lo,
               max((as_of_ts AT TIME ZONE 'UTC')::date) AS hi
        FROM changed
        WHERE balance_code = 'CLBD' AND booked_usd IS NOT NULL
        GROUP BY account_id
        ORDER BY account_id
    LOOP
        PERFORM close_series_refresh(r.account_id, r.lo, r.hi);
    END LOOP;
    RETURN NULL;
END $$;

-- An update of what makes a close (nothing in the service does one; decided_ts is not among them).
CREATE OR REPLACE FUNCTION close_series_after_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.balance_code = 'CLBD' AND OLD.booked_usd IS NOT NULL THEN
        PERFORM close_series_refresh(OLD.account_id, (OLD.as_of_ts AT TIME ZONE 'UTC')::date,
                                     (OLD.as_of_ts AT TIME ZONE 'UTC')::date);
    END IF;
    IF NEW.balance_code = 'CLBD' AND NEW.booked_usd IS NOT NULL THEN
        PERFORM close_series_refresh(NEW.account_id, (NEW.as_of_ts AT TIME ZONE 'UTC')::date,
                                     (NEW.as_of_ts AT TIME ZONE 'UTC')::date);
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION close_series_after_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM close_series;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS balance_close_series_insert ON balance;
CREATE TRIGGER balance_close_series_insert AFTER INSERT ON balance
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION close_series_after_rows();
DROP TRIGGER IF EXISTS balance_close_series_delete ON balance;
CREATE TRIGGER balance_close_series_delete AFTER DELETE ON balance
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION close_series_after_rows();
DROP TRIGGER IF EXISTS balance_close_series_update ON balance;
CREATE TRIGGER balance_close_series_update AFTER UPDATE OF account_id, as_of_ts, balance_code, booked_usd ON balance
    FOR EACH ROW EXECUTE FUNCTION close_series_after_update();
DROP TRIGGER IF EXISTS balance_close_series_truncate ON balance;
CREATE TRIGGER balance_close_series_truncate AFTER TRUNCATE ON balance
    FOR EACH STATEMENT EXECUTE FUNCTION close_series_after_truncate();

-- The closes already in the ledger (a few minutes at 26,000,000 closes, once).
SELECT close_series_refresh(account_id, lo, hi)
FROM (SELECT account_id, min((as_of_ts AT TIME ZONE 'UTC')::date) AS lo, max((as_of_ts AT TIME ZONE 'UTC')::date) AS hi
      FROM balance WHERE balance_code = 'CLBD' AND booked_usd IS NOT NULL
      GROUP BY account_id ORDER BY account_id) AS accounts;
