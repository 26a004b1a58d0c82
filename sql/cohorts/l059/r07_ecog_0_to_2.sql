-- rule: R7
-- criterion: incl. 6
-- name: ECOG 0-2
-- description: the latest ECOG value in [index - @ecog_lookback_days days, index] is <= @max_ecog (several on that day: the worst); no ECOG recorded: the rule fails.
WITH ecog AS (
  SELECT m.person_id, m.value_as_number,
    ROW_NUMBER() OVER (PARTITION BY m.person_id ORDER BY m.start_date DESC, m.value_as_number DESC) AS rn
  FROM @scratch_database_schema.@values_table m
  JOIN @scratch_database_schema.@qualified_table q2 ON q2.person_id = m.person_id
  WHERE m.codeset_id = 15 AND m.value_as_number IS NOT NULL
    AND m.start_date >= DATEADD(day, -@ecog_lookback_days, q2.index_date)
    AND m.start_date <= q2.index_date
)
INSERT INTO @scratch_database_schema.@inclusion_table (rule_id, person_id)
SELECT 6, q.person_id
FROM @scratch_database_schema.@qualified_table q
JOIN ecog ON ecog.person_id = q.person_id AND ecog.rn = 1
WHERE ecog.value_as_number >= 0 AND ecog.value_as_number <= @max_ecog;
