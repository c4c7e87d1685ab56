-- Holds (two-phase postings, src/domain/hold.rs): a PENDING request reserves amounts without
-- posting them; a POST_PENDING, VOID_PENDING or EXPIRE_PENDING request closes the hold, once.
-- Holds, their lines and their closings are append-only like the journal: a hold's status is
-- whether (and how) a closing row exists. What open holds reserve is kept per account next to
-- the posted balance, under the same row lock, and `verify` checks it against the open holds.

CREATE TABLE holds (
    id                uuid PRIMARY KEY,
    entity_id         text NOT NULL REFERENCES entities (id),
    idempotency_key   text NOT NULL UNIQUE,
    effective_date    date NOT NULL,
    expires_at        timestamptz,
    description       text,
    source            text,
    metadata          jsonb NOT NULL DEFAULT '{}'::jsonb,
    source_topic      text NOT NULL,
    source_partition  integer NOT NULL,
    source_offset     bigint NOT NULL,
    batch_id          uuid NOT NULL REFERENCES batches (id),
    recorded_at       timestamptz NOT NULL
);
-- The reporter's expiry scan: open holds whose time is up.
CREATE INDEX holds_expiry ON holds (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE hold_lines (
    hold_id     uuid NOT NULL REFERENCES holds (id),
    line_no     smallint NOT NULL CHECK (line_no >= 1),
    account_id  text NOT NULL REFERENCES accounts (id),
    side        char(1) NOT NULL CHECK (side IN ('D', 'C')),
    amount      numeric NOT NULL CHECK (amount > 0),
    currency    text NOT NULL REFERENCES assets (code),
    PRIMARY KEY (hold_id, line_no)
);
CREATE INDEX hold_lines_account ON hold_lines (account_id);

-- How a hold was closed: posted (by the entry `entry_id`), voided or expired.
CREATE TABLE hold_closings (
    hold_id           uuid PRIMARY KEY REFERENCES holds (id),
    status            text NOT NULL CHECK (status IN ('posted', 'voided', 'expired')),
    closed_by_key     text NOT NULL,
    entry_id          uuid REFERENCES journal_entries (id),
    source_partition  integer NOT NULL,
    source_offset     bigint NOT NULL,
    batch_id          uuid NOT NULL REFERENCES batches (id),
    closed_at         timestamptz NOT NULL,
    CHECK ((status = 'posted') = (entry_id IS NOT NULL))
);

-- Makes a table append-only (rows never updated or deleted, the table never truncated), as
-- migration 0001 does for the journal; for this and later migrations.
CREATE FUNCTION ledgerline_make_append_only(t text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I
                    FOR EACH ROW EXECUTE FUNCTION ledgerline_refuse_change()',
                   t || '_append_only', t);
    EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I
                    FOR EACH STATEMENT EXECUTE FUNCTION ledgerline_refuse_change()',
                   t || '_no_truncate', t);
END;
$$;

SELECT ledgerline_make_append_only(t) FROM unnest(ARRAY['holds', 'hold_lines', 'hold_closings']) AS t;

ALTER TABLE account_balances
    ADD COLUMN pending_debits numeric NOT NULL DEFAULT 0 CHECK (pending_debits >= 0),
    ADD COLUMN pending_credits numeric NOT NULL DEFAULT 0 CHECK (pending_credits >= 0);

-- A PENDING request's outcome is its hold ('held'); a void's or expiry's is the hold it
-- released ('released'); a post of a hold is an entry like any other ('posted').
ALTER TABLE idempotency_records ADD COLUMN hold_id uuid REFERENCES holds (id);
ALTER TABLE idempotency_records DROP CONSTRAINT idempotency_records_outcome_check;
ALTER TABLE idempotency_records ADD CONSTRAINT idempotency_records_outcome_check
    CHECK (outcome IN ('posted', 'rejected', 'held', 'released'));
ALTER TABLE idempotency_records ADD CONSTRAINT idempotency_records_hold_check
    CHECK ((outcome IN ('held', 'released')) = (hold_id IS NOT NULL));

-- Open holds with what they reserve, for reports, the API and verify.
CREATE VIEW open_holds AS
    SELECT h.id, h.entity_id, h.idempotency_key, h.expires_at, h.source_partition
    FROM holds h WHERE NOT EXISTS (SELECT 1 FROM hold_closings c WHERE c.hold_id = h.id);

GRANT SELECT ON holds, hold_lines, hold_closings, open_holds TO ledgerline_writer, ledgerline_reader;
GRANT INSERT ON holds, hold_lines, hold_closings TO ledgerline_writer;
