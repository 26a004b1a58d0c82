-- plausibleStartBeforeEnd: rows whose start date is after their end date
-- (denominator: rows with both dates).
SELECT @check_index AS check_index,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t
    WHERE CAST(t.@cdm_field AS DATE) > CAST(t.@end_field AS DATE)) AS num_violated_rows,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t
    WHERE t.@cdm_field IS NOT NULL AND t.@end_field IS NOT NULL) AS num_denominator_rows
