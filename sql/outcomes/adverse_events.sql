-- Adverse events per person and term with the worst CTCAE grade (COHORT.md, Safety): conditions that carry
-- a grade measurement (measurement_event_id = condition_occurrence_id), starting from index to
-- @safety_days_after days after the end of the last anlotinib exposure (for a cohort without anlotinib:
-- after cohort_end_date), and not after @data_cutoff.
WITH entries AS (
  SELECT subject_id AS person_id, cohort_start_date AS index_date, cohort_end_date,
         ROW_NUMBER() OVER (PARTITION BY subject_id ORDER BY cohort_start_date, cohort_end_date) AS rn
  FROM @results_database_schema.@cohort_table
  WHERE cohort_definition_id = @target_cohort_id
    AND cohort_start_date <= CAST(@data_cutoff AS DATE)
),
cohort AS (
  SELECT person_id, index_date, cohort_end_date FROM entries WHERE rn = 1
),
last_anlotinib AS (
  SELECT c.person_id,
         MAX(COALESCE(de.drug_exposure_end_date,
                      DATEADD(day, de.days_supply - 1, de.drug_exposure_start_date),
                      de.drug_exposure_start_date)) AS last_end
  FROM cohort c
  JOIN @cdm_database_schema.drug_exposure de ON de.person_id = c.person_id
  WHERE de.drug_concept_id IN (@anlotinib_ids)
    AND de.drug_exposure_start_date >= c.index_date
    AND de.drug_exposure_start_date <= CAST(@data_cutoff AS DATE)
  GROUP BY c.person_id
),
windows AS (
  SELECT c.person_id, c.index_date,
         DATEADD(day, @safety_days_after, COALESCE(l.last_end, c.cohort_end_date)) AS window_end
  FROM cohort c
  LEFT JOIN last_anlotinib l ON l.person_id = c.person_id
),
graded AS (
  SELECT w.person_id, co.condition_concept_id,
         -- an unmapped event (concept 0) keeps its source code or text as its term
         CASE WHEN co.condition_concept_id = 0 THEN co.condition_source_value END AS source_value,
         m.value_as_number AS grade
  FROM windows w
  JOIN @cdm_database_schema.condition_occurrence co ON co.person_id = w.person_id
  JOIN @cdm_database_schema.measurement m
    ON m.person_id = co.person_id AND m.measurement_event_id = co.condition_occurrence_id
  WHERE m.measurement_concept_id IN (@ctcae_grade_ids)
    AND m.value_as_number IS NOT NULL
    AND co.condition_start_date >= w.index_date
    AND co.condition_start_date <= w.window_end
    AND co.condition_start_date <= CAST(@data_cutoff AS DATE)
)
SELECT g.person_id, g.condition_concept_id, g.source_value, cn.concept_name,
       MAX(g.grade) AS worst_grade
FROM graded g
LEFT JOIN @cdm_database_schema.concept cn ON cn.concept_id = g.condition_concept_id AND g.condition_concept_id <> 0
GROUP BY g.person_id, g.condition_concept_id, g.source_value, cn.concept_name
ORDER BY g.person_id, g.condition_concept_id, g.source_value;
