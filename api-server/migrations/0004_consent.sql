-- Consent records after ISO/IEC TS 27560: what a person agreed to (purpose, recipient, terms),
-- its state, and every change of state. Terms cannot change once consent is given.
CREATE TABLE consents (
    id          uuid PRIMARY KEY,
    version     integer NOT NULL DEFAULT 1,
    person_id   uuid NOT NULL REFERENCES persons (id),
    area_code   text NOT NULL REFERENCES areas (code),
    purpose     text NOT NULL CHECK (length(purpose) BETWEEN 1 AND 500),
    recipient   text NOT NULL CHECK (length(recipient) BETWEEN 1 AND 200),
    terms       text NOT NULL CHECK (length(terms) BETWEEN 1 AND 20000),
    state       text NOT NULL CHECK (state IN ('requested', 'given', 'refused', 'withdrawn', 'expired')),
    given_at    timestamptz,
    expires_at  timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  uuid NOT NULL,
    deleted_at  timestamptz
);
CREATE INDEX consents_person ON consents (person_id);

CREATE TABLE consent_history (
    consent_id  uuid NOT NULL REFERENCES consents (id),
    seq         integer NOT NULL,
    state       text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       uuid NOT NULL,
    PRIMARY KEY (consent_id, seq)
);

-- Enforced by the database: once given, the terms are what was agreed, whoever writes.
CREATE FUNCTION consents_terms_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.given_at IS NOT NULL AND (NEW.terms, NEW.purpose, NEW.recipient) IS DISTINCT FROM (OLD.terms, OLD.purpose, OLD.recipient) THEN
        RAISE EXCEPTION 'consent terms are immutable once given' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER consents_terms_immutable BEFORE UPDATE ON consents FOR EACH ROW EXECUTE FUNCTION consents_terms_immutable();

ALTER TABLE consents ENABLE ROW LEVEL SECURITY;
CREATE POLICY consents_national ON consents
    USING (dfr_role() IN ('national_admin', 'api_client'))
    WITH CHECK (dfr_role() = 'national_admin');
CREATE POLICY consents_by_area ON consents
    USING (dfr_role() IN ('supervisor', 'enumerator') AND area_code = ANY (dfr_areas()))
    WITH CHECK (dfr_role() IN ('supervisor', 'enumerator') AND area_code = ANY (dfr_areas()));
-- Farmers answer their own consent requests.
CREATE POLICY consents_self ON consents
    USING (dfr_role() = 'farmer' AND person_id::text = dfr_person())
    WITH CHECK (dfr_role() = 'farmer' AND person_id::text = dfr_person());

ALTER TABLE consent_history ENABLE ROW LEVEL SECURITY;
-- History rows are visible exactly when their consent is.
CREATE POLICY consent_history_follows ON consent_history
    USING (EXISTS (SELECT 1 FROM consents c WHERE c.id = consent_id));

GRANT SELECT, INSERT, UPDATE ON consents TO dfr_app;
GRANT SELECT, INSERT ON consent_history TO dfr_app;
