-- journal_lines_account (account_id) has been redundant since 0004 added journal_lines_as_of
-- (account_id, effective_date, recorded_at): every lookup by account, and the foreign key to
-- accounts, can use the leading column of the newer index. Each line paid for both on insert.
DROP INDEX IF EXISTS journal_lines_account;
