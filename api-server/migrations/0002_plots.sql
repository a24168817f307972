-- Plots: a farmer's land as a GeoJSON point or polygon in WGS84, with its area computed on the
-- ellipsoid. Rows carry the area code of their person so row-level security can filter them.
CREATE TABLE plots (
    id          uuid PRIMARY KEY,
    version     integer NOT NULL DEFAULT 1,
    person_id   uuid NOT NULL REFERENCES persons (id),
    area_code   text NOT NULL REFERENCES areas (code),
    geometry    jsonb NOT NULL,
    area_ha     double precision CHECK (area_ha IS NULL OR area_ha > 0),
    tenure      text NOT NULL CHECK (tenure IN ('owned', 'leased', 'customary', 'communal', 'other')),
    land_use    text NOT NULL CHECK (land_use IN ('cropland', 'pasture', 'agroforestry', 'fallow', 'other')),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  uuid NOT NULL,
    deleted_at  timestamptz
);
CREATE INDEX plots_person ON plots (person_id);

ALTER TABLE plots ENABLE ROW LEVEL SECURITY;
CREATE POLICY plots_national ON plots
    USING (dfr_role() IN ('national_admin', 'api_client'))
    WITH CHECK (dfr_role() = 'national_admin');
CREATE POLICY plots_by_area ON plots
    USING (dfr_role() IN ('supervisor', 'enumerator') AND area_code = ANY (dfr_areas()))
    WITH CHECK (dfr_role() IN ('supervisor', 'enumerator') AND area_code = ANY (dfr_areas()));
CREATE POLICY plots_self ON plots FOR SELECT
    USING (dfr_role() = 'farmer' AND person_id::text = dfr_person());

GRANT SELECT, INSERT, UPDATE ON plots TO dfr_app;
