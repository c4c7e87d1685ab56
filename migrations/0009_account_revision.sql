-- A counter that moves whenever any account is created or changed, in the same transaction as
-- the change. The poster keeps account attributes (entity, currency, side, active,
-- allow_negative) between batches and drops them when this counter has moved, instead of
-- reading every account of every batch (docs/BENCHMARKS.md point 20).
CREATE TABLE account_revision (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    revision   bigint NOT NULL
);
INSERT INTO account_revision (singleton, revision) VALUES (true, 0);
GRANT SELECT ON account_revision TO ledgerline_writer, ledgerline_reader;

CREATE FUNCTION account_revision_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE account_revision SET revision = revision + 1;
    RETURN NULL;
END;
$$;
CREATE TRIGGER accounts_revision AFTER INSERT OR UPDATE OR DELETE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION account_revision_bump();
