-- rule: R11
-- criterion: excl. 2
-- name: No PD-(L)1 or anti-angiogenic agent before ES
-- description: no PD-(L)1 agent, anlotinib, apatinib or bevacizumab before the ES date.
INSERT INTO @scratch_database_schema.@inclusion_table (rule_id, person_id)
SELECT 10, q.person_id
FROM @scratch_database_schema.@qualified_table q
LEFT JOIN (
  SELECT DISTINCT d.person_id
  FROM @scratch_database_schema.@events_table d
  JOIN @scratch_database_schema.@qualified_table q2 ON q2.person_id = d.person_id
  WHERE d.codeset_id IN (1, 7, 9) AND d.start_date < q2.es_date
) prior_use ON prior_use.person_id = q.person_id
WHERE prior_use.person_id IS NULL;
