-- rule: R12
-- criterion: excl. 4
-- name: No autoimmune disease with immunosuppressive therapy
-- description: not both an autoimmune condition and immunosuppressive therapy starting in [index - @autoimmune_lookback_days days, index].
INSERT INTO @scratch_database_schema.@inclusion_table (rule_id, person_id)
SELECT 11, q.person_id
FROM @scratch_database_schema.@qualified_table q
LEFT JOIN (
  SELECT c.person_id
  FROM @scratch_database_schema.@events_table c
  JOIN @scratch_database_schema.@qualified_table q2 ON q2.person_id = c.person_id
  WHERE c.codeset_id IN (10, 11)
    AND c.start_date >= DATEADD(day, -@autoimmune_lookback_days, q2.index_date)
    AND c.start_date <= q2.index_date
  GROUP BY c.person_id
  HAVING COUNT(DISTINCT c.codeset_id) = 2
) treated ON treated.person_id = q.person_id
WHERE treated.person_id IS NULL;
