-- rule: R8
-- criterion: summary ("combined with immunotherapy")
-- name: PD-(L)1 agent with anlotinib
-- description: a PD-(L)1 administration in [index - @pd1_before_days days, index + @pd1_after_days days].
INSERT INTO @scratch_database_schema.@inclusion_table (rule_id, person_id)
SELECT 7, q.person_id
FROM @scratch_database_schema.@qualified_table q
JOIN (
  SELECT DISTINCT d.person_id
  FROM @scratch_database_schema.@events_table d
  JOIN @scratch_database_schema.@qualified_table q2 ON q2.person_id = d.person_id
  WHERE d.codeset_id = 7
    AND d.start_date >= DATEADD(day, -@pd1_before_days, q2.index_date)
    AND d.start_date <= DATEADD(day, @pd1_after_days, q2.index_date)
) ok ON ok.person_id = q.person_id;
