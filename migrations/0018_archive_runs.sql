-- Archiving closed periods (issue 23): `ledgerline archive` exports a closed period's entries and
-- lines, with their hash-chain links, to a file, checks the file against the live chains, and
-- records the run here with the file's SHA-256, so that `ledgerline verify --archive FILE`
-- can tell an altered file. Nothing is deleted: the live ledger keeps every entry (the archive
-- is the read-only copy for cold storage). Append-only and audited like the other runs.
CREATE TABLE archive_runs (
    id            bigserial PRIMARY KEY,
    entity_id     text NOT NULL REFERENCES entities (id),
    period_start  date NOT NULL,
    period_end    date NOT NULL,
    file          text NOT NULL,
    sha256        bytea NOT NULL CHECK (length(sha256) = 32),
    entries       bigint NOT NULL CHECK (entries >= 0),
    made_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX archive_runs_sha256 ON archive_runs (sha256);
SELECT ledgerline_make_append_only('archive_runs');
GRANT SELECT ON archive_runs TO ledgerline_writer, ledgerline_reader;
CREATE TRIGGER archive_runs_audit AFTER INSERT ON archive_runs
    FOR EACH ROW EXECUTE FUNCTION ledgerline_audit('file');
