-- Dynamic forms. A definition is published once per version and never changes; a submission
-- is checked against the version it was made with, keyed by the instance id the device gave
-- it (so a resend is recognised), and is about a person, a household or a plot, whose area it
-- carries for row-level security and sync.
CREATE TABLE form_definitions (
    form_key    text NOT NULL CHECK (form_key ~ '^[a-z][a-z0-9_-]{0,62}$'),
    version     integer NOT NULL CHECK (version >= 1),
    title       text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    subject     text NOT NULL CHECK (subject IN ('person', 'household', 'plot')),
    fields      jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  uuid NOT NULL,
    PRIMARY KEY (form_key, version)
);

CREATE TABLE form_submissions (
    id            uuid PRIMARY KEY,
    version       integer NOT NULL DEFAULT 1,
    form_key      text NOT NULL,
    form_version  integer NOT NULL,
    subject       text NOT NULL CHECK (subject IN ('person', 'household', 'plot')),
    subject_id    uuid NOT NULL,
    area_code     text NOT NULL REFERENCES areas (code),
    data          jsonb NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    updated_by    uuid NOT NULL,
    deleted_at    timestamptz,
    FOREIGN KEY (form_key, form_version) REFERENCES form_definitions (form_key, version)
);
CREATE INDEX form_submissions_subject ON form_submissions (subject_id);

-- Definitions are national: every signed-in role reads them, national admins publish (the
-- handler checks the role); no one edits a published version.
GRANT SELECT, INSERT ON form_definitions TO dfr_app;

ALTER TABLE form_submissions ENABLE ROW LEVEL SECURITY;
CREATE POLICY form_submissions_national ON form_submissions
    USING (dfr_role() IN ('national_admin', 'api_client'))
    WITH CHECK (dfr_role() = 'national_admin');
CREATE POLICY form_submissions_by_area ON form_submissions
    USING (dfr_role() IN ('supervisor', 'enumerator') AND area_code = ANY (dfr_areas()))
    WITH CHECK (dfr_role() IN ('supervisor', 'enumerator') AND area_code = ANY (dfr_areas()));
GRANT SELECT, INSERT, UPDATE ON form_submissions TO dfr_app;

CREATE TRIGGER form_submissions_sync AFTER INSERT OR UPDATE ON form_submissions
    FOR EACH ROW EXECUTE FUNCTION sync_record_change('form_submission');
