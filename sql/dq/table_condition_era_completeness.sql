-- measureConditionEraCompleteness: persons with a condition_occurrence but no condition_era
-- (denominator: persons with a condition_occurrence).
SELECT @check_index AS check_index,
  (SELECT COUNT_BIG(DISTINCT co.person_id) FROM @cdm_schema.condition_occurrence co
    WHERE NOT EXISTS (SELECT 1 FROM @cdm_schema.condition_era ce WHERE ce.person_id = co.person_id)) AS num_violated_rows,
  (SELECT COUNT_BIG(DISTINCT co.person_id) FROM @cdm_schema.condition_occurrence co) AS num_denominator_rows
