-- rule: R13
-- criterion: excl. 5
-- name: No coagulation dysfunction or bleeding tendency
-- description: no INR > @max_inr and no APTT > @max_aptt_ratio x ULN (range_high; @default_aptt_uln s where absent) in [index - @coagulation_lab_days days, index]; no coagulation-disorder or bleeding condition in [index - @bleeding_lookback_days days, index].
INSERT INTO @scratch_database_schema.@inclusion_table (rule_id, person_id)
SELECT 12, q.person_id
FROM @scratch_database_schema.@qualified_table q
LEFT JOIN (
  SELECT x.person_id
  FROM @scratch_database_schema.@values_table x
  JOIN @scratch_database_schema.@qualified_table q2 ON q2.person_id = x.person_id
  WHERE ((x.codeset_id = 13 AND x.value_as_number > @max_inr)
         OR (x.codeset_id = 14 AND x.value_as_number > @max_aptt_ratio * COALESCE(x.range_high, @default_aptt_uln)))
    AND x.start_date >= DATEADD(day, -@coagulation_lab_days, q2.index_date) AND x.start_date <= q2.index_date
  UNION
  SELECT c.person_id
  FROM @scratch_database_schema.@events_table c
  JOIN @scratch_database_schema.@qualified_table q2 ON q2.person_id = c.person_id
  WHERE c.codeset_id = 12
    AND c.start_date >= DATEADD(day, -@bleeding_lookback_days, q2.index_date) AND c.start_date <= q2.index_date
) coagulopathy ON coagulopathy.person_id = q.person_id
WHERE coagulopathy.person_id IS NULL;
