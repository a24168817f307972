-- The serving process runs as dfr_app without the owner's credentials; it reads which
-- migrations are applied so that it refuses to serve a schema older than its code.
GRANT SELECT ON _sqlx_migrations TO dfr_app;
