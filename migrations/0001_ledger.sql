-- ledgerline schema: reference data, the append-only journal, derived balances, consumer
-- positions and the outbox. Amounts are NUMERIC (exact), never floating point.

CREATE TABLE entities (
    id          text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 256),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE accounts (
    id              text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),
    entity_id       text NOT NULL REFERENCES entities (id),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 256),
    account_type    text NOT NULL CHECK (account_type IN ('asset', 'liability', 'equity', 'income', 'expense')),
    currency        char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    normal_side     char(1) NOT NULL CHECK (normal_side IN ('D', 'C')),
    allow_negative  boolean NOT NULL DEFAULT true,
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX accounts_entity ON accounts (entity_id);

-- An entity's accounting periods. Postings whose effective date lies in no open period are
-- rejected with PERIOD_CLOSED. Changes are recorded in period_changes.
CREATE TABLE accounting_periods (
    entity_id     text NOT NULL REFERENCES entities (id),
    period_start  date NOT NULL,
    period_end    date NOT NULL,
    status        text NOT NULL CHECK (status IN ('open', 'closed')),
    PRIMARY KEY (entity_id, period_start),
    CHECK (period_end >= period_start)
);

CREATE TABLE period_changes (
    id            bigserial PRIMARY KEY,
    entity_id     text NOT NULL,
    period_start  date NOT NULL,
    action        text NOT NULL CHECK (action IN ('open', 'close', 'reopen')),
    changed_by    text NOT NULL,
    reason        text NOT NULL DEFAULT '',
    changed_at    timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (entity_id, period_start) REFERENCES accounting_periods (entity_id, period_start)
);

-- One row per committed poster batch: what was read and what came of it.
CREATE TABLE batches (
    id                uuid PRIMARY KEY,
    consumer_group    text NOT NULL,
    topic             text NOT NULL,
    partition         integer NOT NULL CHECK (partition >= 0),
    first_offset      bigint NOT NULL CHECK (first_offset >= 0),
    next_offset       bigint NOT NULL CHECK (next_offset > first_offset),
    posted            integer NOT NULL CHECK (posted >= 0),
    rejected          integer NOT NULL CHECK (rejected >= 0),
    duplicates        integer NOT NULL CHECK (duplicates >= 0),
    committed_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX batches_partition ON batches (consumer_group, topic, partition, committed_at DESC);

CREATE TABLE journal_entries (
    id                uuid PRIMARY KEY,
    entity_id         text NOT NULL REFERENCES entities (id),
    idempotency_key   text NOT NULL UNIQUE,
    effective_date    date NOT NULL,                       -- valid time
    recorded_at       timestamptz NOT NULL DEFAULT now(),  -- transaction time
    description       text,
    source            text,
    metadata          jsonb NOT NULL DEFAULT '{}'::jsonb,
    source_topic      text,
    source_partition  integer,
    source_offset     bigint,
    batch_id          uuid REFERENCES batches (id),
    reverses          uuid REFERENCES journal_entries (id),
    hash              bytea,
    prev_hash         bytea
);
CREATE INDEX journal_entries_entity_date ON journal_entries (entity_id, effective_date);
CREATE INDEX journal_entries_recorded ON journal_entries (recorded_at);
CREATE UNIQUE INDEX journal_entries_one_reversal ON journal_entries (reverses) WHERE reverses IS NOT NULL;

CREATE TABLE journal_lines (
    entry_id    uuid NOT NULL REFERENCES journal_entries (id),
    line_no     smallint NOT NULL CHECK (line_no >= 1),
    account_id  text NOT NULL REFERENCES accounts (id),
    side        char(1) NOT NULL CHECK (side IN ('D', 'C')),
    amount      numeric NOT NULL CHECK (amount > 0),
    currency    char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    PRIMARY KEY (entry_id, line_no)
);
CREATE INDEX journal_lines_account ON journal_lines (account_id);

-- Derived: balance in the account's normal-side orientation and a per-account version that
-- increases by one per entry touching the account (balance events carry it).
CREATE TABLE account_balances (
    account_id  text PRIMARY KEY REFERENCES accounts (id),
    balance     numeric NOT NULL DEFAULT 0,
    version     bigint NOT NULL DEFAULT 0 CHECK (version >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rejections (
    id                uuid PRIMARY KEY,
    idempotency_key   text,
    reason_code       text NOT NULL,
    detail            text NOT NULL,
    raw               bytea NOT NULL,
    source_topic      text,
    source_partition  integer,
    source_offset     bigint,
    batch_id          uuid REFERENCES batches (id),
    rejected_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rejections_reason ON rejections (reason_code);
CREATE UNIQUE INDEX rejections_source ON rejections (source_topic, source_partition, source_offset);

-- One outcome per idempotency key, forever.
CREATE TABLE idempotency_records (
    key           text PRIMARY KEY,
    fingerprint   bytea NOT NULL CHECK (length(fingerprint) = 32),
    outcome       text NOT NULL CHECK (outcome IN ('posted', 'rejected')),
    entry_id      uuid REFERENCES journal_entries (id),
    rejection_id  uuid REFERENCES rejections (id),
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((outcome = 'posted') = (entry_id IS NOT NULL)),
    CHECK ((outcome = 'rejected') = (rejection_id IS NOT NULL))
);

-- The source of truth for consumer positions: written in the same transaction as the postings.
CREATE TABLE consumer_checkpoints (
    consumer_group  text NOT NULL,
    topic           text NOT NULL,
    partition       integer NOT NULL CHECK (partition >= 0),
    next_offset     bigint NOT NULL CHECK (next_offset >= 0),
    batch_id        uuid REFERENCES batches (id),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);

CREATE TABLE outbox (
    id            bigserial PRIMARY KEY,
    event_id      uuid NOT NULL UNIQUE,
    kind          text NOT NULL CHECK (kind IN ('balance', 'anomaly', 'rejection')),
    event_key     text NOT NULL,
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- Append-only: the journal and the records of what happened are never updated or deleted.
-- Corrections are reversal entries. (Grants enforce the same for the application role.)
CREATE FUNCTION ledgerline_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledgerline: % on % is refused: the table is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['journal_entries', 'journal_lines', 'rejections',
                             'idempotency_records', 'batches', 'period_changes']
    LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I
                        FOR EACH ROW EXECUTE FUNCTION ledgerline_refuse_change()',
                       t || '_append_only', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I
                        FOR EACH STATEMENT EXECUTE FUNCTION ledgerline_refuse_change()',
                       t || '_no_truncate', t);
    END LOOP;
END;
$$;
