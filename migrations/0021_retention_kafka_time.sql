-- Retention on one clock (src/domain/retention.rs): the cut is a bound on the messages' Kafka
-- timestamps. The poster refuses a message whose Kafka timestamp is before the newest cut; a
-- prune deletes the records whose message's Kafka timestamp is before it. Migration 0017
-- deleted by `recorded_at` (the database's clock) while the poster compared the producer's:
-- with a producer clock ahead of the database's, a record could go while its message was not
-- stale, and a replay would meet an already-posted request without its record.
--
-- `produced_at`: the Kafka timestamp of the message that made the record; NULL when the
-- message had none (such a message is stale once any cut exists, whatever its record) or when
-- the record was written before this migration (no timestamp was kept): those are judged by
-- `recorded_at`, as before. For a record written before this migration that is safe when the
-- cut is later than the upgrade by more than the producers' clocks run ahead of the database's.
ALTER TABLE idempotency_records ADD COLUMN produced_at timestamptz;

-- Idempotency records stay append-only, except that a record behind a recorded cut may go.
CREATE OR REPLACE FUNCTION ledgerline_refuse_change_unless_cut() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND COALESCE(OLD.produced_at, OLD.recorded_at) < (SELECT max(cut) FROM retention_cuts) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'ledgerline: % on % is refused: the table is append-only (records behind a retention cut may be pruned)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

-- The query API answers for a pruned key from the journal, the holds and their closings (a
-- void's or an expiry's key is its closing's `closed_by_key`).
CREATE INDEX hold_closings_key ON hold_closings (closed_by_key);
