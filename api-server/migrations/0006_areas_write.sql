-- National admins add administrative areas through the API (the handler checks the role).
GRANT INSERT ON areas TO dfr_app;
