-- The entrants' records whose concept is in one of the concept sets, one row per (record, set), with the
-- dates the rules read. Drug end: drug_exposure_end_date, else start + days_supply - 1, else start.
-- Measurements and observations also go, with their values, into the values table, which the rules that
-- read a value use: most records (drug exposures) have no value, and three always-NULL columns on every
-- row cost as much to write as the four that carry data.
INSERT INTO @scratch_database_schema.@events_table (person_id, codeset_id, start_date, end_date)
SELECT x.person_id, cs.codeset_id, x.start_date, x.end_date
FROM (
  SELECT co.person_id, co.condition_concept_id AS concept_id, co.condition_start_date AS start_date,
    COALESCE(co.condition_end_date, co.condition_start_date) AS end_date
  FROM @cdm_database_schema.condition_occurrence co
  UNION ALL
  SELECT de.person_id, de.drug_concept_id, de.drug_exposure_start_date,
    COALESCE(de.drug_exposure_end_date,
             CASE WHEN de.days_supply > 0 THEN DATEADD(day, de.days_supply - 1, de.drug_exposure_start_date) END,
             de.drug_exposure_start_date)
  FROM @cdm_database_schema.drug_exposure de
  UNION ALL
  SELECT po.person_id, po.procedure_concept_id, po.procedure_date, COALESCE(po.procedure_end_date, po.procedure_date)
  FROM @cdm_database_schema.procedure_occurrence po
  UNION ALL
  SELECT m.person_id, m.measurement_concept_id, m.measurement_date, m.measurement_date
  FROM @cdm_database_schema.measurement m
  UNION ALL
  SELECT o.person_id, o.observation_concept_id, o.observation_date, o.observation_date
  FROM @cdm_database_schema.observation o
) x
JOIN @scratch_database_schema.@codeset_table cs ON cs.concept_id = x.concept_id
JOIN @scratch_database_schema.@entry_table e ON e.person_id = x.person_id;
INSERT INTO @scratch_database_schema.@values_table (person_id, codeset_id, start_date, value_as_number, value_as_concept_id, range_high)
SELECT x.person_id, cs.codeset_id, x.start_date, x.value_as_number, x.value_as_concept_id, x.range_high
FROM (
  SELECT m.person_id, m.measurement_concept_id AS concept_id, m.measurement_date AS start_date,
    CAST(m.value_as_number AS FLOAT) AS value_as_number, CAST(m.value_as_concept_id AS BIGINT) AS value_as_concept_id,
    CAST(m.range_high AS FLOAT) AS range_high
  FROM @cdm_database_schema.measurement m
  UNION ALL
  SELECT o.person_id, o.observation_concept_id, o.observation_date,
    CAST(o.value_as_number AS FLOAT), CAST(o.value_as_concept_id AS BIGINT), CAST(NULL AS FLOAT)
  FROM @cdm_database_schema.observation o
) x
JOIN @scratch_database_schema.@codeset_table cs ON cs.concept_id = x.concept_id
JOIN @scratch_database_schema.@entry_table e ON e.person_id = x.person_id;
