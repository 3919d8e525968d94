-- Database roles. Caliber's processes log in as whatever DATABASE_URL names and then SET ROLE
-- caliber_app (DATABASE_ROLE), so they hold these rights only: everything on Caliber's own
-- tables, and SELECT alone on working_version, which belongs to the model discovery pipeline
-- (caliber_discovery is the role to give that pipeline's login).
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'caliber_app') THEN CREATE ROLE caliber_app NOLOGIN; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'caliber_discovery') THEN CREATE ROLE caliber_discovery NOLOGIN; END IF;
END $$;
--> statement-breakpoint
GRANT USAGE ON SCHEMA public TO caliber_app, caliber_discovery;
--> statement-breakpoint
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public TO caliber_app;
--> statement-breakpoint
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO caliber_app;
--> statement-breakpoint
-- Tables and sequences later migrations create (as this same login user) get the same rights.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON TABLES TO caliber_app;
--> statement-breakpoint
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO caliber_app;
--> statement-breakpoint
REVOKE ALL ON working_version FROM caliber_app;
--> statement-breakpoint
GRANT SELECT ON working_version TO caliber_app;
--> statement-breakpoint
REVOKE ALL ON SEQUENCE working_version_id_seq FROM caliber_app;
--> statement-breakpoint
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON working_version TO caliber_discovery;
--> statement-breakpoint
GRANT USAGE, SELECT, UPDATE ON SEQUENCE working_version_id_seq TO caliber_discovery;
--> statement-breakpoint
-- A login that is not a superuser can only SET ROLE to a role it belongs to.
DO $$
BEGIN
  EXECUTE format('GRANT caliber_app TO %I', current_user);
EXCEPTION WHEN others THEN NULL; -- a superuser needs no membership; the grant may be refused on managed servers
END $$;
--> statement-breakpoint
-- Lets Caliber see what other sessions are running (pg_stat_activity), for operators and tests.
DO $$
BEGIN
  GRANT pg_read_all_stats TO caliber_app;
EXCEPTION WHEN insufficient_privilege THEN NULL;
END $$;
