-- Retention (issue 23): idempotency records older than a retention window may be pruned, but
-- only behind a verified backup taken after the cut (the backup still holds every pruned
-- record), and the cut itself is recorded: the poster rejects any request produced before the
-- newest cut (by its Kafka timestamp) with STALE_REQUEST, so a replay of old offsets can never
-- post a request twice once its record is gone. The rules live here, not in the CLI: a DELETE
-- of a record is refused unless a recorded cut lies after it, and a cut is refused unless a
-- verified backup finished after it.
CREATE TABLE retention_cuts (
    id             bigserial PRIMARY KEY,
    cut            timestamptz NOT NULL,
    backup_run_id  bigint NOT NULL REFERENCES backup_runs (id),
    made_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK (cut < made_at)
);
SELECT ledgerline_make_append_only('retention_cuts');
GRANT SELECT ON retention_cuts TO ledgerline_writer, ledgerline_reader;
CREATE TRIGGER retention_cuts_audit AFTER INSERT ON retention_cuts
    FOR EACH ROW EXECUTE FUNCTION ledgerline_audit('cut');

CREATE FUNCTION ledgerline_check_cut() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM backup_runs b
                   WHERE b.id = NEW.backup_run_id AND b.ok AND b.verified
                     AND b.finished_at - make_interval(secs => b.duration_seconds) > NEW.cut) THEN
        RAISE EXCEPTION 'ledgerline: no verified backup taken after the cut %', NEW.cut
            USING ERRCODE = 'check_violation',
                  HINT = 'run ops/backup.sh (it verifies the backup) and prune again';
    END IF;
    IF NEW.cut < (SELECT max(cut) FROM retention_cuts) THEN
        RAISE EXCEPTION 'ledgerline: the cut % is older than the newest cut', NEW.cut
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER retention_cuts_need_backup BEFORE INSERT ON retention_cuts
    FOR EACH ROW EXECUTE FUNCTION ledgerline_check_cut();

-- Idempotency records stay append-only, except that a record behind a recorded cut may go.
CREATE FUNCTION ledgerline_refuse_change_unless_cut() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND OLD.recorded_at < (SELECT max(cut) FROM retention_cuts) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'ledgerline: % on % is refused: the table is append-only (records behind a retention cut may be pruned)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
DROP TRIGGER idempotency_records_append_only ON idempotency_records;
CREATE TRIGGER idempotency_records_append_only BEFORE UPDATE OR DELETE ON idempotency_records
    FOR EACH ROW EXECUTE FUNCTION ledgerline_refuse_change_unless_cut();
-- No index on recorded_at: a prune (rare, by an operator) scans; every batch's COPY would pay for one.
