-- Per entrant: first SCLC diagnosis; ES date = first extensive-stage record on or after it; induction
-- start = first platinum administration on or after ES date - @induction_lookback_days.
WITH sclc AS (
  SELECT person_id, MIN(start_date) AS sclc_date
  FROM @scratch_database_schema.@events_table
  WHERE codeset_id = 2
  GROUP BY person_id
), es AS (
  SELECT ev.person_id, MIN(ev.start_date) AS es_date
  FROM @scratch_database_schema.@events_table ev
  JOIN sclc ON sclc.person_id = ev.person_id
  WHERE ev.codeset_id = 3 AND ev.start_date >= sclc.sclc_date
  GROUP BY ev.person_id
), induction AS (
  SELECT ev.person_id, MIN(ev.start_date) AS induction_start
  FROM @scratch_database_schema.@events_table ev
  JOIN es ON es.person_id = ev.person_id
  WHERE ev.codeset_id = 5 AND ev.start_date >= DATEADD(day, -@induction_lookback_days, es.es_date)
  GROUP BY ev.person_id
)
INSERT INTO @scratch_database_schema.@qualified_table (person_id, index_date, op_start_date, op_end_date, cohort_end_date, sclc_date, es_date, induction_start)
SELECT e.person_id, e.index_date, e.op_start_date, e.op_end_date, e.cohort_end_date, sclc.sclc_date, es.es_date, induction.induction_start
FROM @scratch_database_schema.@entry_table e
LEFT JOIN sclc ON sclc.person_id = e.person_id
LEFT JOIN es ON es.person_id = e.person_id
LEFT JOIN induction ON induction.person_id = e.person_id;
