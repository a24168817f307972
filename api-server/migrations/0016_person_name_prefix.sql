-- A name search is a prefix of the family or the given name, lowercased. It used `lower(name)
-- LIKE 'prefix%'`, which no index answered: persons has row-level security, and PostgreSQL
-- then uses an index only for a condition whose functions are leakproof (so a policy cannot be
-- bypassed through an error message), which `lower` and `LIKE` are not. On 100,000 persons
-- each search read every person of the area, or for a national admin the whole table in id
-- order. The lowercased names are kept as columns here, and the search compares them with the
-- pattern operators `~>=~` and `~<~` and `starts_with`, which are leakproof, so these indexes
-- answer it. Adding the columns rewrites the table once.
DROP INDEX persons_name;
ALTER TABLE persons
    ADD COLUMN family_name_lower text GENERATED ALWAYS AS (lower(family_name)) STORED,
    ADD COLUMN given_name_lower text GENERATED ALWAYS AS (lower(given_name)) STORED;
CREATE INDEX persons_family_name_prefix ON persons (family_name_lower text_pattern_ops);
CREATE INDEX persons_given_name_prefix ON persons (given_name_lower text_pattern_ops);
