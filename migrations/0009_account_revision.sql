-- A revision that changes whenever any account is created or changed, in the same transaction
-- as the change. The poster keeps account attributes (entity, currency, side, active,
-- allow_negative) between batches and drops them when the revision has changed, instead of
-- reading every account of every batch (docs/BENCHMARKS.md point 20). A random id rather than
-- a counter: after a restore to an earlier point, new changes cannot bring back a revision a
-- running poster already knows with other contents.
CREATE TABLE account_revision (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    revision   uuid NOT NULL
);
INSERT INTO account_revision (singleton, revision) VALUES (true, gen_random_uuid());
GRANT SELECT ON account_revision TO ledgerline_writer, ledgerline_reader;

CREATE FUNCTION account_revision_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE account_revision SET revision = gen_random_uuid();
    RETURN NULL;
END;
$$;
CREATE TRIGGER accounts_revision AFTER INSERT OR UPDATE OR DELETE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION account_revision_bump();
