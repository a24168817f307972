-- An edit of a household replaces its members.
GRANT DELETE ON household_members TO dfr_app;

-- A deleted farmer profile (a tombstone) does not stop its person from having a new one; the
-- index keeps the constraint's name, which src/constraint.rs answers by.
ALTER TABLE farmer_profiles DROP CONSTRAINT farmer_profiles_person_id_key;
CREATE UNIQUE INDEX farmer_profiles_person_id_key ON farmer_profiles (person_id) WHERE deleted_at IS NULL;
