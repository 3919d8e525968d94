-- Database roles. Caliber's processes log in as whatever DATABASE_URL names and then take the role
-- caliber_app (DATABASE_ROLE, a startup parameter), so they hold these rights only: everything on
-- Caliber's own tables, SELECT alone on working_version. working_version belongs to
-- caliber_discovery, the role to give the model discovery pipeline's login.
-- Roles are per server: several Caliber databases on one server share them. A login that may not
-- create roles (some managed servers) skips all of this; run with DATABASE_ROLE=none there.
DO $$
DECLARE
  can_manage boolean := (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user);
BEGIN
  IF NOT can_manage AND NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'caliber_app') THEN
    RAISE NOTICE 'caliber: % may not create roles; skipping them (set DATABASE_ROLE=none)', current_user;
    RETURN;
  END IF;
  BEGIN
    CREATE ROLE caliber_app NOLOGIN;
  EXCEPTION WHEN duplicate_object THEN NULL; -- made by another database's migration, or earlier
  END;
  BEGIN
    CREATE ROLE caliber_discovery NOLOGIN;
  EXCEPTION WHEN duplicate_object THEN NULL;
  END;

  GRANT USAGE ON SCHEMA public TO caliber_app, caliber_discovery;
  GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public TO caliber_app;
  GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO caliber_app;
  -- Tables and sequences later migrations create (as this same login) get the same rights.
  ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON TABLES TO caliber_app;
  ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO caliber_app;

  REVOKE ALL ON working_version FROM caliber_app;
  GRANT SELECT ON working_version TO caliber_app;
  REVOKE ALL ON SEQUENCE working_version_id_seq FROM caliber_app;
  GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON working_version TO caliber_discovery;
  GRANT USAGE, SELECT, UPDATE ON SEQUENCE working_version_id_seq TO caliber_discovery;

  -- A login that is not a superuser can only take a role it belongs to.
  BEGIN
    EXECUTE format('GRANT caliber_app TO %I', current_user);
  EXCEPTION WHEN others THEN
    RAISE NOTICE 'caliber: could not make % a member of caliber_app (%); a superuser needs no membership', current_user, SQLERRM;
  END;
  -- The pipeline's role owns its table, so not even Caliber's login user (unless a superuser) can
  -- write it by leaving caliber_app.
  BEGIN
    ALTER TABLE working_version OWNER TO caliber_discovery;
  EXCEPTION WHEN others THEN
    RAISE NOTICE 'caliber: working_version stays owned by % (%)', current_user, SQLERRM;
  END;
END $$;
