-- Credentials out of the application role's reach. dfr_app reads every column of users but the
-- password hash and the TOTP secret, and no column of refresh_tokens; sign-in and the refresh
-- grant go through the SECURITY DEFINER functions below (owned by the owner role), which hand
-- out one user's verifier at a time, for the username being signed in. A statement of the
-- application, injected or not, cannot list the hashes or secrets. A column added to users
-- later must be granted to dfr_app here-like, column by column.

-- Whether a TOTP secret is enrolled, readable without reading the secret.
ALTER TABLE users ADD COLUMN second_factor boolean
    GENERATED ALWAYS AS (totp_secret IS NOT NULL) STORED;

REVOKE SELECT ON users FROM dfr_app;
GRANT SELECT (id, username, role, areas, person_id, scopes, failed_attempts, locked_until,
              created_at, disabled_at, updated_at, second_factor)
    ON users TO dfr_app;

-- INSERT and UPDATE (used_at, revoked_at) stay; every read goes through the functions.
REVOKE SELECT ON refresh_tokens FROM dfr_app;

-- What the password grant needs of one user, looked up by username: the verifier (Argon2
-- runs in the server, not in SQL) and the state that decides whether it may sign in.
CREATE FUNCTION dfr_sign_in(p_username text)
    RETURNS TABLE (id uuid, password_hash text, totp_secret text, role text, areas text[],
                   person_id uuid, scopes text[], failed_attempts integer, locked boolean,
                   disabled boolean)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS
$$ SELECT u.id, u.password_hash, u.totp_secret, u.role, u.areas, u.person_id, u.scopes,
          u.failed_attempts, coalesce(u.locked_until > now(), false), u.disabled_at IS NOT NULL
   FROM users u WHERE u.username = p_username $$;
REVOKE ALL ON FUNCTION dfr_sign_in(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dfr_sign_in(text) TO dfr_app;

-- Spends a refresh token given by its SHA-256: 'ok' marks it used; 'reused' (a token spent
-- twice was stolen) revokes its whole family; 'invalid', 'expired' change nothing.
CREATE FUNCTION dfr_redeem_refresh(p_token_hash text)
    RETURNS TABLE (outcome text, user_id uuid, family uuid)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public AS
$$
DECLARE
    t refresh_tokens%ROWTYPE;
BEGIN
    SELECT * INTO t FROM refresh_tokens r WHERE r.token_hash = p_token_hash FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'invalid'::text, NULL::uuid, NULL::uuid;
        RETURN;
    END IF;
    IF t.used_at IS NOT NULL THEN
        UPDATE refresh_tokens r SET revoked_at = now()
            WHERE r.family = t.family AND r.revoked_at IS NULL;
        RETURN QUERY SELECT 'reused'::text, t.user_id, t.family;
    ELSIF t.revoked_at IS NOT NULL OR t.expires_at < now() THEN
        RETURN QUERY SELECT 'expired'::text, t.user_id, t.family;
    ELSE
        UPDATE refresh_tokens r SET used_at = now() WHERE r.id = t.id;
        RETURN QUERY SELECT 'ok'::text, t.user_id, t.family;
    END IF;
END
$$;
REVOKE ALL ON FUNCTION dfr_redeem_refresh(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dfr_redeem_refresh(text) TO dfr_app;

-- Ends every session of a user (password reset, access change, disable, erasure).
CREATE FUNCTION dfr_revoke_refresh_tokens(p_user uuid) RETURNS void
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public AS
$$ UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = p_user AND revoked_at IS NULL $$;
REVOKE ALL ON FUNCTION dfr_revoke_refresh_tokens(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dfr_revoke_refresh_tokens(uuid) TO dfr_app;
