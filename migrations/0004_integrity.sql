-- Ledger integrity: a hash chain per source partition, valid and transaction time on lines for
-- fast as-of balances, recorded position changes (replays) so checkpoint history can be
-- verified, least-privilege roles, and a view linking reversals both ways.

-- The head of each chain (one per source topic and partition), locked per batch: no global lock.
CREATE TABLE hash_chains (
    source_topic      text NOT NULL,
    source_partition  integer NOT NULL,
    head              bytea NOT NULL CHECK (length(head) = 32),
    entries           bigint NOT NULL CHECK (entries >= 0),
    PRIMARY KEY (source_topic, source_partition)
);

-- Valid time and transaction time copied onto lines, so that an as-of balance is one index range.
ALTER TABLE journal_lines ADD COLUMN effective_date date;
ALTER TABLE journal_lines ADD COLUMN recorded_at timestamptz;
CREATE INDEX journal_lines_as_of ON journal_lines (account_id, effective_date, recorded_at) INCLUDE (side, amount);
CREATE INDEX journal_entries_chain ON journal_entries (source_topic, source_partition, source_offset);

-- Operator moves of consumer positions (replay), append-only.
CREATE TABLE position_changes (
    id              bigserial PRIMARY KEY,
    consumer_group  text NOT NULL,
    topic           text NOT NULL,
    partition       integer NOT NULL,
    from_offset     bigint,
    to_offset       bigint NOT NULL,
    changed_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TRIGGER position_changes_append_only BEFORE UPDATE OR DELETE ON position_changes
    FOR EACH ROW EXECUTE FUNCTION ledgerline_refuse_change();
CREATE TRIGGER position_changes_no_truncate BEFORE TRUNCATE ON position_changes
    FOR EACH STATEMENT EXECUTE FUNCTION ledgerline_refuse_change();

-- Both directions of a reversal: the reversing entry names its target (journal_entries.reverses,
-- unique); the target's reversal is found through the same column. Journal rows are never
-- updated, so the link from the target is this view rather than a column.
CREATE VIEW entry_reversals AS
    SELECT r.reverses AS entry_id, r.id AS reversed_by, r.recorded_at
    FROM journal_entries r WHERE r.reverses IS NOT NULL;

-- Least privilege: the writer (poster, reporter) inserts into the journal and updates only what
-- must change; the reader (reports, verify) reads. Login users are granted one of these.
-- Roles are shared by every database of the server: tolerate another database (or a
-- concurrent migration) having created them.
DO $$
BEGIN
    BEGIN
        CREATE ROLE ledgerline_writer NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
    BEGIN
        CREATE ROLE ledgerline_reader NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
END;
$$;

GRANT USAGE ON SCHEMA public TO ledgerline_writer, ledgerline_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO ledgerline_writer, ledgerline_reader;
GRANT INSERT ON journal_entries, journal_lines, rejections, idempotency_records, batches,
    outbox, position_changes, poster_instances, anomaly_causes, consumer_checkpoints, hash_chains
    TO ledgerline_writer;
GRANT UPDATE ON account_balances, consumer_checkpoints, hash_chains, anomaly_causes, poster_instances
    TO ledgerline_writer;
GRANT UPDATE (published_at) ON outbox TO ledgerline_writer;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO ledgerline_writer;

-- Lines written before this migration get their entry's times (the journal is append-only, so
-- the guard is lifted for this one backfill inside the migration's transaction).
ALTER TABLE journal_lines DISABLE TRIGGER journal_lines_append_only;
UPDATE journal_lines l SET effective_date = e.effective_date, recorded_at = e.recorded_at
FROM journal_entries e WHERE e.id = l.entry_id AND l.effective_date IS NULL;
ALTER TABLE journal_lines ENABLE TRIGGER journal_lines_append_only;
ALTER TABLE journal_lines ALTER COLUMN effective_date SET NOT NULL;
ALTER TABLE journal_lines ALTER COLUMN recorded_at SET NOT NULL;
