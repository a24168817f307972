-- An import sent with ?background=true runs after the request is answered; this row is what
-- the client polls: the state, how many records the import will write and has written, and
-- at the end the report or the error. The import itself still writes in one transaction of
-- its own, so a job that fails or is rejected leaves no record behind, only this row.
CREATE TABLE import_jobs (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('persons', 'plots', 'households')),
    dry_run     boolean NOT NULL,
    state       text NOT NULL CHECK (state IN ('checking', 'writing', 'done', 'rejected', 'failed')),
    rows        integer NOT NULL CHECK (rows >= 0),
    to_write    integer NOT NULL DEFAULT 0 CHECK (to_write >= 0),
    written     integer NOT NULL DEFAULT 0 CHECK (written >= 0),
    report      jsonb,
    error_code  text,
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- A job is its starter's: the report names rows of their file and the records they may see.
ALTER TABLE import_jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY import_jobs_own ON import_jobs
    USING (user_id::text = dfr_user()) WITH CHECK (user_id::text = dfr_user());
GRANT SELECT, INSERT, UPDATE ON import_jobs TO dfr_app;
