-- Data-subject rights. An erasure overwrites every PII column of a person in place (national
-- ID ciphertext, blind index and last four, names, birth date, sex, phone, e-mail), tombstones
-- the person and what hangs off it, blanks the location of their plots and drops the device
-- data that sync conflicts kept for those records. The row stays, as a shell, so the audit
-- chain (which holds only ids and digests) and the sync tombstones keep naming it.
ALTER TABLE persons ADD COLUMN erased_at timestamptz;

-- National admins erase through the API: the conflicts' device data is cleared in place.
GRANT UPDATE (client_data_cipher) ON sync_conflicts TO dfr_app;

-- A person's complete record lists the audit events of each of their records.
CREATE INDEX audit_events_entity_id ON audit_events (entity_id);
