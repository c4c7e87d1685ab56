-- Two per-batch costs that do not grow with the batch (docs/BENCHMARKS.md point 26).
--
-- 1. The statement-level reference check (0008) looks each distinct key up with one index probe.
--    Written as NOT EXISTS, PostgreSQL planned it as a hash anti-join: it read and hashed the
--    whole referenced table on every statement, so checking the accounts of a batch of 200
--    postings cost 2.8 ms against 10,000 accounts, and more as the chart grows. A LATERAL
--    subquery with LIMIT cannot be turned back into a join, so each key is one probe of the
--    referenced table's primary key. Same result and error, same SQLSTATE (23503).
CREATE OR REPLACE FUNCTION ledgerline_check_reference() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE missing text;
BEGIN
    EXECUTE format(
        'SELECT n.k::text FROM (SELECT DISTINCT %1$I AS k FROM new_rows WHERE %1$I IS NOT NULL) n
         LEFT JOIN LATERAL (SELECT true AS found FROM %2$I p WHERE p.id = n.k LIMIT 1) f ON true
         WHERE f.found IS NULL LIMIT 1',
        TG_ARGV[0], TG_ARGV[1]) INTO missing;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'ledgerline: % refers to % % that does not exist', TG_TABLE_NAME, TG_ARGV[2], missing
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = format('%s.%s = %s; no row of %s has that id', TG_TABLE_NAME, TG_ARGV[0], missing, TG_ARGV[1]);
    END IF;
    RETURN NULL;
END;
$$;

-- 2. Balance rows are updated by every batch that touches their account. With full pages, an
--    update cannot stay on its page and must add a new entry to the primary-key index (not a
--    HOT update). Half-full pages leave room for the new row version on the same page.
--    Applies to pages written from now on; `VACUUM FULL account_balances` rewrites the
--    existing ones.
ALTER TABLE account_balances SET (fillfactor = 50);
