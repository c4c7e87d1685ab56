-- An audit trail of operator actions (issue 23): who changed reference data or positions, and
-- when. Written by triggers in the same transaction as the change, whatever wrote it, so it
-- cannot be skipped; the function runs as the schema owner (SECURITY DEFINER), so no service
-- role needs, or has, the right to write audit rows itself. The actor is the session's
-- `ledgerline.actor` setting (the CLI sets it to the operator, `--by` or $USER), else the
-- database role. Append-only like the journal.
CREATE TABLE audit_log (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor    text NOT NULL,
    role     text NOT NULL DEFAULT session_user,
    action   text NOT NULL,
    subject  text,
    detail   jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_at ON audit_log (at);
SELECT ledgerline_make_append_only('audit_log');
GRANT SELECT ON audit_log TO ledgerline_writer, ledgerline_reader;

-- TG_ARGV[0]: the column naming the subject (an account's id, an asset's code, ...).
CREATE FUNCTION ledgerline_audit() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp AS $$
DECLARE
    row_now jsonb := CASE WHEN TG_OP = 'DELETE' THEN to_jsonb(OLD) ELSE to_jsonb(NEW) END;
    detail jsonb;
BEGIN
    detail := CASE TG_OP
        WHEN 'UPDATE' THEN jsonb_build_object('before', to_jsonb(OLD), 'after', to_jsonb(NEW))
        ELSE row_now END;
    INSERT INTO audit_log (actor, action, subject, detail)
    VALUES (COALESCE(NULLIF(current_setting('ledgerline.actor', true), ''), session_user),
            TG_TABLE_NAME || '.' || lower(TG_OP), row_now ->> TG_ARGV[0], detail);
    RETURN NULL;
END;
$$;

CREATE TRIGGER entities_audit AFTER INSERT OR UPDATE OR DELETE ON entities
    FOR EACH ROW EXECUTE FUNCTION ledgerline_audit('id');
CREATE TRIGGER accounts_audit AFTER INSERT OR UPDATE OR DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION ledgerline_audit('id');
CREATE TRIGGER assets_audit AFTER INSERT OR UPDATE OR DELETE ON assets
    FOR EACH ROW EXECUTE FUNCTION ledgerline_audit('code');
-- Opening, closing and reopening a period (with who and why) are rows of period_changes.
CREATE TRIGGER period_changes_audit AFTER INSERT ON period_changes
    FOR EACH ROW EXECUTE FUNCTION ledgerline_audit('entity_id');
-- Replays and forced moves of consumer positions.
CREATE TRIGGER position_changes_audit AFTER INSERT ON position_changes
    FOR EACH ROW EXECUTE FUNCTION ledgerline_audit('consumer_group');
-- Backup runs (and, later, archive runs and prunes) are operator actions too.
CREATE TRIGGER backup_runs_audit AFTER INSERT ON backup_runs
    FOR EACH ROW EXECUTE FUNCTION ledgerline_audit('file');
