-- rule: R10
-- criterion: description ("evaluable radiographic assessments")
-- name: Evaluable tumour assessment after index
-- description: at least one tumour assessment with response CR, PR, SD or PD after the index date.
INSERT INTO @scratch_database_schema.@inclusion_table (rule_id, person_id)
SELECT 9, q.person_id
FROM @scratch_database_schema.@qualified_table q
JOIN (
  SELECT DISTINCT a.person_id
  FROM @scratch_database_schema.@values_table a
  JOIN @scratch_database_schema.@qualified_table q2 ON q2.person_id = a.person_id
  JOIN @scratch_database_schema.@codeset_table v ON v.concept_id = a.value_as_concept_id AND v.codeset_id = 18
  WHERE a.codeset_id = 17 AND a.start_date > q2.index_date
) ok ON ok.person_id = q.person_id;
