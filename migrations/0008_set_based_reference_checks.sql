-- The journal's references are checked once per statement, over all its rows, instead of by a
-- foreign-key trigger per row.
--
-- Why: a profile of the poster under load (perf, docs/BENCHMARKS.md point 16) put 35% of
-- PostgreSQL's CPU in foreign-key checks. A batch of 1,000 two-line postings ran about 7,000 of
-- them: each an executor start-up and a row lock (FOR KEY SHARE) on the referenced row. The
-- account row locks are also written to the WAL and, when two batches lock the same account,
-- made into multixacts.
--
-- The guarantee is the same. A foreign key makes sure that (1) a referenced row exists when the
-- referencing row is written, and (2) it is not deleted or re-keyed afterwards. Here:
-- (1) an AFTER INSERT ... FOR EACH STATEMENT trigger looks up every distinct key of the
--     statement's new rows (a transition table) and refuses the statement, with the same
--     SQLSTATE as a foreign key (23503), if one is missing;
-- (2) the referenced rows can never go: journal entries, batches and rejections were already
--     append-only (0001), and accounts and entities now refuse DELETE, TRUNCATE and a change of
--     id (an account is deactivated, never deleted). Because nothing can remove a referenced
--     row, the row lock a foreign key takes to hold it in place is not needed.
-- Other foreign keys (balances, periods, checkpoints, rare columns) stay as they are.

ALTER TABLE journal_lines DROP CONSTRAINT journal_lines_entry_id_fkey;
ALTER TABLE journal_lines DROP CONSTRAINT journal_lines_account_id_fkey;
ALTER TABLE journal_entries DROP CONSTRAINT journal_entries_entity_id_fkey;
ALTER TABLE journal_entries DROP CONSTRAINT journal_entries_batch_id_fkey;
ALTER TABLE idempotency_records DROP CONSTRAINT idempotency_records_entry_id_fkey;
ALTER TABLE idempotency_records DROP CONSTRAINT idempotency_records_rejection_id_fkey;

-- One check per reference, declared like the foreign key it replaces:
--   ledgerline_check_reference(column, referenced table, what it is called in the error).
-- Every referenced table's key is `id`. NULL references are not checked (as with a foreign key).
CREATE FUNCTION ledgerline_check_reference() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE missing text;
BEGIN
    EXECUTE format(
        'SELECT n.k::text FROM (SELECT DISTINCT %1$I AS k FROM new_rows WHERE %1$I IS NOT NULL) n
         WHERE NOT EXISTS (SELECT 1 FROM %2$I p WHERE p.id = n.k) LIMIT 1',
        TG_ARGV[0], TG_ARGV[1]) INTO missing;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'ledgerline: % refers to % % that does not exist', TG_TABLE_NAME, TG_ARGV[2], missing
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = format('%s.%s = %s; no row of %s has that id', TG_TABLE_NAME, TG_ARGV[0], missing, TG_ARGV[1]);
    END IF;
    RETURN NULL;
END;
$$;

DO $$
DECLARE r text[];
BEGIN
    FOREACH r SLICE 1 IN ARRAY ARRAY[
        -- table, column, referenced table, name in errors
        ['journal_lines', 'entry_id', 'journal_entries', 'journal entry'],
        ['journal_lines', 'account_id', 'accounts', 'account'],
        ['journal_entries', 'entity_id', 'entities', 'entity'],
        ['journal_entries', 'batch_id', 'batches', 'batch'],
        ['idempotency_records', 'entry_id', 'journal_entries', 'journal entry'],
        ['idempotency_records', 'rejection_id', 'rejections', 'rejection']]
    LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %I REFERENCING NEW TABLE AS new_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION ledgerline_check_reference(%L, %L, %L)',
                       r[1] || '_' || r[2] || '_exists', r[1], r[2], r[3], r[4]);
    END LOOP;
END;
$$;

-- Referenced rows stay: accounts and entities are never deleted, truncated or re-keyed.
CREATE FUNCTION ledgerline_refuse_removal() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledgerline: % on % is refused: the journal refers to its rows, which are never removed or re-keyed (deactivate an account instead)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['accounts', 'entities']
    LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE DELETE ON %I
                        FOR EACH ROW EXECUTE FUNCTION ledgerline_refuse_removal()',
                       t || '_no_delete', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OF id ON %I
                        FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)
                        EXECUTE FUNCTION ledgerline_refuse_removal()',
                       t || '_key_fixed', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I
                        FOR EACH STATEMENT EXECUTE FUNCTION ledgerline_refuse_removal()',
                       t || '_no_truncate', t);
    END LOOP;
END;
$$;
