-- plausibleTemporalAfter (same table): rows whose date is before the date of another field of the row
-- (denominator: rows with both dates).
SELECT @check_index AS check_index,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t
    WHERE CAST(t.@cdm_field AS DATE) < CAST(t.@after_field AS DATE)) AS num_violated_rows,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t
    WHERE t.@cdm_field IS NOT NULL AND t.@after_field IS NOT NULL) AS num_denominator_rows
