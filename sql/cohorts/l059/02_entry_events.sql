-- Entry event: the person's first-ever anlotinib exposure (concept set 1), kept when it lies in the study
-- window and inside an observation period. Cohort end: the end of that observation period, or the death
-- date if earlier (never before the index date).
INSERT INTO @scratch_database_schema.@entry_table (person_id, index_date, op_start_date, op_end_date, cohort_end_date)
SELECT f.person_id, f.index_date, op.observation_period_start_date, op.observation_period_end_date,
  CASE
    WHEN d.death_date IS NOT NULL AND d.death_date < op.observation_period_end_date THEN
      CASE WHEN d.death_date < f.index_date THEN f.index_date ELSE d.death_date END
    ELSE op.observation_period_end_date
  END AS cohort_end_date
FROM (
  SELECT de.person_id, MIN(de.drug_exposure_start_date) AS index_date
  FROM @cdm_database_schema.drug_exposure de
  JOIN @scratch_database_schema.@codeset_table cs ON cs.concept_id = de.drug_concept_id AND cs.codeset_id = 1
  GROUP BY de.person_id
) f
JOIN @cdm_database_schema.observation_period op
  ON op.person_id = f.person_id
  AND op.observation_period_start_date <= f.index_date
  AND op.observation_period_end_date >= f.index_date
LEFT JOIN (
  SELECT person_id, MIN(death_date) AS death_date
  FROM @cdm_database_schema.death
  GROUP BY person_id
) d ON d.person_id = f.person_id
WHERE f.index_date >= CAST(@study_start AS DATE)
  AND f.index_date <= CAST(@study_end AS DATE);
