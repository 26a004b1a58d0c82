-- withinVisitDates: rows dated more than 7 days before the start or after the end of their visit
-- (denominator: rows linked to a visit).
SELECT @check_index AS check_index,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t
     JOIN @cdm_schema.visit_occurrence v ON v.visit_occurrence_id = t.visit_occurrence_id
    WHERE CAST(t.@cdm_field AS DATE) < DATEADD(day, -7, v.visit_start_date)
       OR CAST(t.@cdm_field AS DATE) > DATEADD(day, 7, v.visit_end_date)) AS num_violated_rows,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t
     JOIN @cdm_schema.visit_occurrence v ON v.visit_occurrence_id = t.visit_occurrence_id) AS num_denominator_rows
