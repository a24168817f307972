-- User administration through the API (national admins; the handlers check the role, since
-- users have no row-level security): create, disable and enable, unlock, reset a password,
-- change role, areas and scopes. A disabled user cannot sign in or refresh.
ALTER TABLE users ADD COLUMN disabled_at timestamptz;
ALTER TABLE users ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

GRANT INSERT ON users TO dfr_app;
GRANT UPDATE (password_hash, role, areas, person_id, scopes, totp_secret, disabled_at, updated_at)
    ON users TO dfr_app;
