-- rule: R2
-- criterion: incl. 2
-- name: ES-SCLC by index
-- description: an SCLC diagnosis and an extensive-stage record on or after it (the ES date), both on or before the index date.
INSERT INTO @scratch_database_schema.@inclusion_table (rule_id, person_id)
SELECT 1, q.person_id
FROM @scratch_database_schema.@qualified_table q
WHERE q.sclc_date <= q.index_date AND q.es_date <= q.index_date;
