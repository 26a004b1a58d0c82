-- rule: R3
-- criterion: incl. 3, excl. 1
-- name: Treatment-free interval after limited-stage disease
-- description: no limited-stage record before the ES date, or the last anticancer treatment (chemotherapy, PD-(L)1 agent or radiotherapy) that ended before the ES date ended >= @ls_free_interval_days days before it.
INSERT INTO @scratch_database_schema.@inclusion_table (rule_id, person_id)
SELECT 2, q.person_id
FROM @scratch_database_schema.@qualified_table q
LEFT JOIN (
  SELECT DISTINCT ls.person_id
  FROM @scratch_database_schema.@events_table ls
  JOIN @scratch_database_schema.@qualified_table q2 ON q2.person_id = ls.person_id
  WHERE ls.codeset_id = 4 AND ls.start_date < q2.es_date
) limited ON limited.person_id = q.person_id
LEFT JOIN (
  SELECT DISTINCT t.person_id
  FROM @scratch_database_schema.@events_table t
  JOIN @scratch_database_schema.@qualified_table q2 ON q2.person_id = t.person_id
  WHERE t.codeset_id IN (5, 6, 7, 8)
    AND t.end_date < q2.es_date
    AND t.end_date > DATEADD(day, -@ls_free_interval_days, q2.es_date)
) recent ON recent.person_id = q.person_id
WHERE limited.person_id IS NULL OR recent.person_id IS NULL;
