-- The query API (issue 22).
--
-- Requests by idempotency key: the first outcome is in idempotency_records; later requests
-- under the same key with other contents are rejections (IDEMPOTENCY_CONFLICT) carrying the
-- key, found through this index.
CREATE INDEX rejections_key ON rejections (idempotency_key) WHERE idempotency_key IS NOT NULL;

-- History pages are read in index order and stop at the page's end: each list's index holds
-- its whole order, so a page is a range scan from the cursor (without the tie-breaking
-- columns, every page sorted all of an account's lines). The as-of index keeps its name and
-- its use (a prefix of the new key); the two time indexes gain their lists' tie-breakers.
DROP INDEX journal_lines_as_of;
CREATE INDEX journal_lines_as_of ON journal_lines (account_id, effective_date, recorded_at, entry_id, line_no)
    INCLUDE (side, amount);
DROP INDEX journal_entries_recorded;
CREATE INDEX journal_entries_recorded ON journal_entries (recorded_at, id);
DROP INDEX rejections_time;
CREATE INDEX rejections_time ON rejections (rejected_at, id);
