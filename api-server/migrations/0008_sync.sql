-- Offline sync: a change log the delta pull reads; the mutations a push applied (so a replay
-- applies nothing twice); and the conflicts a push met (so the losing side survives).

-- One row per record: the last transaction that wrote it (its xid8) and a sequence number to
-- order the rows one transaction wrote. The pull hands out only rows whose xid is below the
-- xmin of its snapshot: every transaction below xmin has ended, and any transaction that
-- writes later gets an xid at or above it, so the set of rows below xmin never grows behind a
-- cursor. Neither updated_at nor a plain sequence has that property: both are taken before
-- commit, so a transaction that commits late would appear behind a cursor already handed out.
-- A trigger writes it, so every path that changes a record (API, sync push, hand edits by the
-- owner) is seen by the pull.
CREATE SEQUENCE sync_change_seq;
CREATE TABLE sync_changes (
    entity     text NOT NULL,
    record_id  uuid NOT NULL,
    area_code  text NOT NULL,
    version    integer NOT NULL,
    deleted    boolean NOT NULL,
    xid        xid8 NOT NULL,
    seq        bigint NOT NULL,
    PRIMARY KEY (entity, record_id)
);
CREATE INDEX sync_changes_order ON sync_changes (xid, seq);

-- SECURITY DEFINER: the application role only reads the log, it never writes it itself.
CREATE FUNCTION sync_record_change() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = public AS $$
BEGIN
    INSERT INTO sync_changes (entity, record_id, area_code, version, deleted, xid, seq)
    VALUES (TG_ARGV[0], NEW.id, NEW.area_code, NEW.version, NEW.deleted_at IS NOT NULL,
            pg_current_xact_id(), nextval('sync_change_seq'))
    ON CONFLICT (entity, record_id) DO UPDATE SET area_code = EXCLUDED.area_code,
        version = EXCLUDED.version, deleted = EXCLUDED.deleted, xid = EXCLUDED.xid, seq = EXCLUDED.seq;
    RETURN NULL;
END
$$;

DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES ('persons', 'person'), ('households', 'household'),
                                   ('farmer_profiles', 'farmer_profile'), ('plots', 'plot'),
                                   ('holdings', 'holding'), ('consents', 'consent')) AS v (tab, entity) LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE ON %I FOR EACH ROW EXECUTE FUNCTION sync_record_change(%L)',
                       t.tab || '_sync', t.tab, t.entity);
        -- Records made before this migration are changes of its own transaction.
        EXECUTE format('INSERT INTO sync_changes (entity, record_id, area_code, version, deleted, xid, seq) '
                       'SELECT %L, id, area_code, version, deleted_at IS NOT NULL, pg_current_xact_id(), nextval(''sync_change_seq'') FROM %I',
                       t.entity, t.tab);
    END LOOP;
END
$$;

ALTER TABLE sync_changes ENABLE ROW LEVEL SECURITY;
CREATE POLICY sync_changes_national ON sync_changes FOR SELECT
    USING (dfr_role() = 'national_admin');
CREATE POLICY sync_changes_by_area ON sync_changes FOR SELECT
    USING (dfr_role() IN ('supervisor', 'enumerator') AND area_code = ANY (dfr_areas()));
GRANT SELECT ON sync_changes TO dfr_app;

CREATE FUNCTION dfr_user() RETURNS text LANGUAGE sql STABLE AS
    $$ SELECT coalesce(current_setting('dfr.user_id', true), '') $$;

-- What each pushed mutation came to, by the user's client mutation id. Written in the same
-- transaction as the mutation itself, so a mutation is applied and remembered together.
CREATE TABLE sync_mutations (
    user_id            uuid NOT NULL,
    client_mutation_id uuid NOT NULL,
    entity             text NOT NULL,
    record_id          uuid NOT NULL,
    result             jsonb NOT NULL,
    at                 timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, client_mutation_id)
);
ALTER TABLE sync_mutations ENABLE ROW LEVEL SECURITY;
CREATE POLICY sync_mutations_own ON sync_mutations
    USING (user_id::text = dfr_user()) WITH CHECK (user_id::text = dfr_user());
GRANT SELECT, INSERT ON sync_mutations TO dfr_app;

-- A pushed edit or delete based on a version the server had moved past: the client's data
-- (encrypted with the PII key ring, since a person's carries PII) beside the server's version.
CREATE TABLE sync_conflicts (
    id                 uuid PRIMARY KEY,
    entity             text NOT NULL,
    record_id          uuid NOT NULL,
    area_code          text NOT NULL REFERENCES areas (code),
    user_id            uuid NOT NULL,
    client_mutation_id uuid NOT NULL,
    operation          text NOT NULL CHECK (operation IN ('update', 'delete')),
    base_version       integer NOT NULL,
    server_version     integer NOT NULL,
    client_data_cipher text,
    at                 timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sync_conflicts_record ON sync_conflicts (entity, record_id);
ALTER TABLE sync_conflicts ENABLE ROW LEVEL SECURITY;
CREATE POLICY sync_conflicts_national ON sync_conflicts
    USING (dfr_role() = 'national_admin') WITH CHECK (dfr_role() = 'national_admin');
CREATE POLICY sync_conflicts_by_area ON sync_conflicts
    USING (dfr_role() IN ('supervisor', 'enumerator') AND area_code = ANY (dfr_areas()))
    WITH CHECK (dfr_role() IN ('supervisor', 'enumerator') AND area_code = ANY (dfr_areas()));
GRANT SELECT, INSERT ON sync_conflicts TO dfr_app;
