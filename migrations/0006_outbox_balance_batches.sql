-- One outbox row per batch for balance events, instead of one row per balance change.
--
-- A 2-line posting made two outbox rows, each with two index entries: on a 2,000-posting batch
-- that was 4,000 rows and 8,000 index insertions, written while the batch holds its accounts'
-- balance row locks (docs/BENCHMARKS.md). A row of kind 'balances' holds a JSON array of balance
-- events in version order per account; `events` says how many, so the reporter can bound a
-- round by events rather than rows. Rows of kind 'balance' (one event) written before this
-- migration are still published as they are.
ALTER TABLE outbox DROP CONSTRAINT outbox_kind_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_kind_check
    CHECK (kind IN ('balance', 'balances', 'anomaly', 'rejection'));
ALTER TABLE outbox ADD COLUMN events integer NOT NULL DEFAULT 1 CHECK (events >= 1);

-- A batch row is about 1.3 MB of JSON for 2,000 two-line postings. PostgreSQL's default TOAST
-- compression (pglz) took 17 ms to store one; lz4 takes 5 ms and still shrinks it several
-- times. Servers built without lz4 keep the default.
DO $$
BEGIN
    ALTER TABLE outbox ALTER COLUMN payload SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not available on this server; outbox payloads keep the default compression';
END
$$;
