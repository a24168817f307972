-- A dry run must find every row its import would fail on. A record id taken by a record the
-- caller may not see (another area's, or a deleted one, whose tombstone keeps its id) would
-- only fail at the insert, so an import asks which of its new ids are taken, in every area and
-- including tombstones. Only the ids come back, which is what a create with one of them
-- reveals anyway by its duplicate_id answer.
CREATE FUNCTION dfr_taken_ids(p_kind text, p_ids uuid[]) RETURNS SETOF uuid
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public AS $$
BEGIN
    CASE p_kind
        WHEN 'person' THEN RETURN QUERY SELECT id FROM persons WHERE id = ANY (p_ids);
        WHEN 'plot' THEN RETURN QUERY SELECT id FROM plots WHERE id = ANY (p_ids);
        WHEN 'household' THEN RETURN QUERY SELECT id FROM households WHERE id = ANY (p_ids);
        ELSE RAISE EXCEPTION 'dfr_taken_ids: no record kind %', p_kind;
    END CASE;
END
$$;
REVOKE ALL ON FUNCTION dfr_taken_ids(text, uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dfr_taken_ids(text, uuid[]) TO dfr_app;
