-- The registry schema. Runs as the owner role (DFR_MIGRATION_DATABASE_USER); the application
-- role dfr_app is not the owner and has no BYPASSRLS, so row-level security always applies to it.

CREATE TABLE areas (
    code        text PRIMARY KEY CHECK (code ~ '^[A-Z0-9][A-Z0-9.-]{0,62}$'),
    parent_code text REFERENCES areas (code),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    level       smallint NOT NULL CHECK (level BETWEEN 0 AND 10)
);

CREATE TABLE users (
    id              uuid PRIMARY KEY,
    username        text NOT NULL UNIQUE CHECK (length(username) BETWEEN 3 AND 100),
    password_hash   text NOT NULL,
    role            text NOT NULL CHECK (role IN ('national_admin', 'supervisor', 'enumerator', 'farmer', 'api_client')),
    areas           text[] NOT NULL DEFAULT '{}',
    person_id       uuid,
    scopes          text[] NOT NULL DEFAULT '{}',
    failed_attempts integer NOT NULL DEFAULT 0,
    locked_until    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- PII columns hold AES-256-GCM ciphertext ("<key id>:<base64 nonce||ciphertext>"); the
-- national ID is also kept as an HMAC blind index for exact lookup and duplicate detection.
CREATE TABLE persons (
    id                   uuid PRIMARY KEY,
    version              integer NOT NULL DEFAULT 1,
    national_id_system   text NOT NULL,
    national_id_cipher   text NOT NULL,
    national_id_index    text NOT NULL,
    national_id_last4    text NOT NULL,
    given_name           text NOT NULL,
    family_name          text NOT NULL,
    sex                  smallint NOT NULL CHECK (sex IN (0, 1, 2, 9)),
    birth_date           date NOT NULL,
    birth_date_estimated boolean NOT NULL DEFAULT false,
    phone_cipher         text,
    email_cipher         text,
    area_code            text NOT NULL REFERENCES areas (code),
    status               text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'deceased')),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    updated_by           uuid NOT NULL,
    deleted_at           timestamptz
);
CREATE UNIQUE INDEX persons_national_id ON persons (national_id_system, national_id_index) WHERE deleted_at IS NULL;
CREATE INDEX persons_area_status ON persons (area_code, status, id);
CREATE INDEX persons_name ON persons (lower(family_name), lower(given_name), id);

-- Append-only and hash-chained: each row's hash covers the previous row's hash.
CREATE TABLE audit_events (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL,
    actor       uuid,
    action      text NOT NULL,
    entity      text NOT NULL,
    entity_id   text NOT NULL,
    before_hash text,
    after_hash  text,
    prev_hash   text NOT NULL,
    hash        text NOT NULL
);

-- Who is asking, set per transaction by the API with set_config(..., true).
CREATE FUNCTION dfr_role() RETURNS text LANGUAGE sql STABLE AS
    $$ SELECT coalesce(current_setting('dfr.role', true), '') $$;
CREATE FUNCTION dfr_areas() RETURNS text[] LANGUAGE sql STABLE AS
    $$ SELECT string_to_array(coalesce(current_setting('dfr.areas', true), ''), ',') $$;
CREATE FUNCTION dfr_person() RETURNS text LANGUAGE sql STABLE AS
    $$ SELECT coalesce(current_setting('dfr.person_id', true), '') $$;

-- Not FORCEd: the owner (migrations, dfr_find_national_id) sees every row; dfr_app never does.
ALTER TABLE persons ENABLE ROW LEVEL SECURITY;

CREATE POLICY persons_national ON persons
    USING (dfr_role() IN ('national_admin', 'api_client'))
    WITH CHECK (dfr_role() = 'national_admin');
CREATE POLICY persons_by_area ON persons
    USING (dfr_role() IN ('supervisor', 'enumerator') AND area_code = ANY (dfr_areas()))
    WITH CHECK (dfr_role() IN ('supervisor', 'enumerator') AND area_code = ANY (dfr_areas()));
CREATE POLICY persons_self ON persons FOR SELECT
    USING (dfr_role() = 'farmer' AND id::text = dfr_person());

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dfr_app') THEN
        RAISE EXCEPTION 'role dfr_app must exist before the migrations run (the operator creates it)';
    END IF;
END
$$;

GRANT SELECT ON areas TO dfr_app;
GRANT SELECT, UPDATE (failed_attempts, locked_until) ON users TO dfr_app;
GRANT SELECT, INSERT, UPDATE ON persons TO dfr_app;
GRANT SELECT, INSERT ON audit_events TO dfr_app;

-- Duplicate detection must see every area (a person registered elsewhere is still a duplicate)
-- but reveals only the id, which the caller can read only if row-level security allows it.
CREATE FUNCTION dfr_find_national_id(p_system text, p_index text) RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS
    $$ SELECT id FROM persons WHERE national_id_system = p_system AND national_id_index = p_index
       AND deleted_at IS NULL LIMIT 1 $$;
REVOKE ALL ON FUNCTION dfr_find_national_id(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dfr_find_national_id(text, text) TO dfr_app;
