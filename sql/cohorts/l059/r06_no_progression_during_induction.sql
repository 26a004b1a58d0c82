-- rule: R6
-- criterion: incl. 5, excl. 3
-- name: No progression during induction
-- description: no PD tumour assessment from induction start to the index date.
INSERT INTO @scratch_database_schema.@inclusion_table (rule_id, person_id)
SELECT 5, q.person_id
FROM @scratch_database_schema.@qualified_table q
LEFT JOIN (
  SELECT DISTINCT a.person_id
  FROM @scratch_database_schema.@values_table a
  JOIN @scratch_database_schema.@qualified_table q2 ON q2.person_id = a.person_id
  JOIN @scratch_database_schema.@codeset_table v ON v.concept_id = a.value_as_concept_id AND v.codeset_id = 19
  WHERE a.codeset_id = 17 AND a.start_date >= q2.induction_start AND a.start_date <= q2.index_date
) pd ON pd.person_id = q.person_id
WHERE pd.person_id IS NULL;
