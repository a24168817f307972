-- Households and their members, farmer profiles, and holdings (what is grown or raised on a
-- plot in a season). Each row carries an area code for row-level security.
CREATE TABLE households (
    id          uuid PRIMARY KEY,
    version     integer NOT NULL DEFAULT 1,
    area_code   text NOT NULL REFERENCES areas (code),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  uuid NOT NULL,
    deleted_at  timestamptz
);
CREATE TABLE household_members (
    household_id uuid NOT NULL REFERENCES households (id),
    person_id    uuid NOT NULL REFERENCES persons (id),
    role         text NOT NULL CHECK (role IN ('head', 'spouse', 'child', 'other')),
    PRIMARY KEY (household_id, person_id)
);
CREATE UNIQUE INDEX household_one_head ON household_members (household_id) WHERE role = 'head';

CREATE TABLE farmer_profiles (
    id               uuid PRIMARY KEY,
    version          integer NOT NULL DEFAULT 1,
    person_id        uuid NOT NULL UNIQUE REFERENCES persons (id),
    area_code        text NOT NULL REFERENCES areas (code),
    primary_activity text NOT NULL CHECK (primary_activity IN ('crops', 'livestock', 'mixed', 'fisheries', 'forestry')),
    cooperative      text CHECK (cooperative IS NULL OR length(cooperative) BETWEEN 1 AND 200),
    years_farming    integer CHECK (years_farming IS NULL OR years_farming BETWEEN 0 AND 100),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    updated_by       uuid NOT NULL,
    deleted_at       timestamptz
);

CREATE TABLE holdings (
    id          uuid PRIMARY KEY,
    version     integer NOT NULL DEFAULT 1,
    plot_id     uuid NOT NULL REFERENCES plots (id),
    area_code   text NOT NULL REFERENCES areas (code),
    season      text NOT NULL CHECK (season ~ '^[0-9]{4}[A-Z]?$'),
    kind        text NOT NULL CHECK (kind IN ('crop', 'livestock')),
    item        text NOT NULL CHECK (length(item) BETWEEN 1 AND 100),
    quantity    double precision NOT NULL CHECK (quantity > 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  uuid NOT NULL,
    deleted_at  timestamptz
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['households', 'farmer_profiles', 'holdings'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY %I ON %I USING (dfr_role() IN ('national_admin', 'api_client'))
                       WITH CHECK (dfr_role() = 'national_admin')$p$, t || '_national', t);
        EXECUTE format($p$CREATE POLICY %I ON %I
                       USING (dfr_role() IN ('supervisor', 'enumerator') AND area_code = ANY (dfr_areas()))
                       WITH CHECK (dfr_role() IN ('supervisor', 'enumerator') AND area_code = ANY (dfr_areas()))$p$,
                       t || '_by_area', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE ON %I TO dfr_app', t);
    END LOOP;
END
$$;
CREATE POLICY farmer_profiles_self ON farmer_profiles FOR SELECT
    USING (dfr_role() = 'farmer' AND person_id::text = dfr_person());

ALTER TABLE household_members ENABLE ROW LEVEL SECURITY;
CREATE POLICY household_members_follow ON household_members
    USING (EXISTS (SELECT 1 FROM households h WHERE h.id = household_id))
    WITH CHECK (EXISTS (SELECT 1 FROM households h WHERE h.id = household_id));
GRANT SELECT, INSERT ON household_members TO dfr_app;
