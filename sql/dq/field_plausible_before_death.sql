-- plausibleBeforeDeath: rows dated more than 60 days after the person's death (DQD's allowance for
-- late-recorded events; denominator: non-NULL rows of persons who died).
SELECT @check_index AS check_index,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t
     JOIN @cdm_schema.death d ON d.person_id = t.person_id
    WHERE t.@cdm_field IS NOT NULL
      AND CAST(t.@cdm_field AS DATE) > DATEADD(day, 60, d.death_date)) AS num_violated_rows,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t
     JOIN @cdm_schema.death d ON d.person_id = t.person_id
    WHERE t.@cdm_field IS NOT NULL) AS num_denominator_rows
