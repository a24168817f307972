-- Second factor for national admins, and refresh tokens that rotate on every use. A refresh
-- token used twice means it was stolen: its whole family (one login) is revoked.
ALTER TABLE users ADD COLUMN totp_secret text;

CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY,
    family      uuid NOT NULL,
    user_id     uuid NOT NULL REFERENCES users (id),
    token_hash  text NOT NULL UNIQUE,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family);

GRANT SELECT (totp_secret) ON users TO dfr_app;
GRANT SELECT, INSERT, UPDATE (used_at, revoked_at) ON refresh_tokens TO dfr_app;
