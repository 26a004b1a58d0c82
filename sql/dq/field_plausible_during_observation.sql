-- plausibleDuringObservation (L059): rows dated outside every observation period of the person
-- (denominator: non-NULL rows).
SELECT @check_index AS check_index,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t
    WHERE t.@cdm_field IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM @cdm_schema.observation_period op
                       WHERE op.person_id = t.person_id
                         AND CAST(t.@cdm_field AS DATE) >= op.observation_period_start_date
                         AND CAST(t.@cdm_field AS DATE) <= op.observation_period_end_date)) AS num_violated_rows,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t WHERE t.@cdm_field IS NOT NULL) AS num_denominator_rows
