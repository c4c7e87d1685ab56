-- Backups that are watched (issue 23): every ops/backup.sh run records its outcome here, and
-- the active reporter exports the latest figures as metrics (alerts: failed, missing, size
-- jump). Append-only: the record of what was backed up is evidence too.
CREATE TABLE backup_runs (
    id                bigserial PRIMARY KEY,
    finished_at       timestamptz NOT NULL DEFAULT now(),
    ok                boolean NOT NULL,
    -- Restored into a scratch database and its row counts compared.
    verified          boolean NOT NULL DEFAULT false,
    size_bytes        bigint CHECK (size_bytes >= 0),
    duration_seconds  double precision NOT NULL CHECK (duration_seconds >= 0),
    file              text,
    error             text,
    CHECK (ok = (error IS NULL)),
    CHECK (NOT ok OR size_bytes IS NOT NULL)
);
CREATE INDEX backup_runs_ok ON backup_runs (ok, finished_at DESC);
SELECT ledgerline_make_append_only('backup_runs');
GRANT SELECT ON backup_runs TO ledgerline_writer, ledgerline_reader;
