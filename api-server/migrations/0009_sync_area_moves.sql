-- A record that moves to another area (a plot given to a person elsewhere) must reach the
-- devices of the area it left, as a tombstone. The change log keeps the areas a record has
-- moved out of, and those areas' staff see its row (never the record itself, which row-level
-- security on its own table still hides), so their pull answers it as deleted.
ALTER TABLE sync_changes ADD COLUMN left_areas text[] NOT NULL DEFAULT '{}';

CREATE OR REPLACE FUNCTION sync_record_change() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = public AS $$
BEGIN
    INSERT INTO sync_changes (entity, record_id, area_code, version, deleted, xid, seq)
    VALUES (TG_ARGV[0], NEW.id, NEW.area_code, NEW.version, NEW.deleted_at IS NOT NULL,
            pg_current_xact_id(), nextval('sync_change_seq'))
    ON CONFLICT (entity, record_id) DO UPDATE SET area_code = EXCLUDED.area_code,
        -- The area it had, unless it is moving back there.
        left_areas = array_remove(sync_changes.left_areas || sync_changes.area_code, EXCLUDED.area_code),
        version = EXCLUDED.version, deleted = EXCLUDED.deleted, xid = EXCLUDED.xid, seq = EXCLUDED.seq;
    RETURN NULL;
END
$$;

DROP POLICY sync_changes_by_area ON sync_changes;
CREATE POLICY sync_changes_by_area ON sync_changes FOR SELECT
    USING (dfr_role() IN ('supervisor', 'enumerator')
           AND (area_code = ANY (dfr_areas()) OR left_areas && dfr_areas()));
