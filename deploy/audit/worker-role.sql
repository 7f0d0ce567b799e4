-- Give the worker's least-privilege role `tpt_worker` its login password. A psql script, idempotent: run it
-- again to rotate the password. Migration 0001 creates the role without a password and grants it only what
-- the worker needs; this creates the role itself when migrations have not run yet, so either order works.
-- The password comes from the environment variable WORKER_PASSWORD, never from the command line.
\set ON_ERROR_STOP on
\getenv worker_password WORKER_PASSWORD
\if :{?worker_password}
\else
  DO 'BEGIN RAISE EXCEPTION ''WORKER_PASSWORD is not set: the worker role needs a password''; END';
\endif
SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tpt_worker') AS role_missing \gset
\if :role_missing
  CREATE ROLE tpt_worker LOGIN;
\endif
ALTER ROLE tpt_worker WITH LOGIN PASSWORD :'worker_password';
