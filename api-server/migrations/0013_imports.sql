-- An import checks thousands of national IDs for duplicates at once, in every area (as
-- dfr_find_national_id does for one): only the ids of the holders come back.
CREATE FUNCTION dfr_find_national_ids(p_system text[], p_index text[])
    RETURNS TABLE (id_system text, id_index text, id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS
    $$ SELECT p.national_id_system, p.national_id_index, p.id
       FROM persons p JOIN unnest(p_system, p_index) AS q (id_system, id_index)
         ON p.national_id_system = q.id_system AND p.national_id_index = q.id_index
       WHERE p.deleted_at IS NULL $$;
REVOKE ALL ON FUNCTION dfr_find_national_ids(text[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dfr_find_national_ids(text[], text[]) TO dfr_app;
