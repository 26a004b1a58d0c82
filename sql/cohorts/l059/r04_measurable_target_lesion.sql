-- rule: R4
-- criterion: incl. 4
-- name: Measurable target lesion
-- description: a target-lesion measurement >= @min_lesion_mm mm between ES date - @lesion_lookback_days days and the index date.
INSERT INTO @scratch_database_schema.@inclusion_table (rule_id, person_id)
SELECT 3, q.person_id
FROM @scratch_database_schema.@qualified_table q
JOIN (
  SELECT DISTINCT m.person_id
  FROM @scratch_database_schema.@values_table m
  JOIN @scratch_database_schema.@qualified_table q2 ON q2.person_id = m.person_id
  WHERE m.codeset_id = 16
    AND m.value_as_number >= @min_lesion_mm
    AND m.start_date >= DATEADD(day, -@lesion_lookback_days, q2.es_date)
    AND m.start_date <= q2.index_date
) ok ON ok.person_id = q.person_id;
