-- Every trigger function (and the SECURITY DEFINER audit function) runs with a fixed
-- search_path, so that the tables and functions it names unqualified are the ledger's own
-- whatever the session's search_path says. Without it, a session whose search_path puts
-- another schema first could make, e.g., ledgerline_refuse_change_unless_cut read its own
-- `retention_cuts` (and let idempotency records go that no recorded cut covers), or make the
-- reference checks look up its own `accounts`. pg_catalog comes first so that built-in
-- functions and operators cannot be shadowed; pg_temp last so that temporary tables cannot
-- either. The ledger lives in the schema `public` (migrations 0004 and 0016 name it).
-- tests/it/store_schema.rs fails when a trigger or SECURITY DEFINER function lacks one.
ALTER FUNCTION ledgerline_refuse_change() SET search_path = pg_catalog, public, pg_temp;
ALTER FUNCTION ledgerline_check_reference() SET search_path = pg_catalog, public, pg_temp;
ALTER FUNCTION ledgerline_refuse_removal() SET search_path = pg_catalog, public, pg_temp;
ALTER FUNCTION account_revision_bump() SET search_path = pg_catalog, public, pg_temp;
ALTER FUNCTION ledgerline_asset_scale_fixed() SET search_path = pg_catalog, public, pg_temp;
ALTER FUNCTION ledgerline_audit() SET search_path = pg_catalog, public, pg_temp;
ALTER FUNCTION ledgerline_check_cut() SET search_path = pg_catalog, public, pg_temp;
ALTER FUNCTION ledgerline_refuse_change_unless_cut() SET search_path = pg_catalog, public, pg_temp;
-- Not a trigger function, but it creates triggers on tables named by the caller.
ALTER FUNCTION ledgerline_make_append_only(text) SET search_path = pg_catalog, public, pg_temp;
