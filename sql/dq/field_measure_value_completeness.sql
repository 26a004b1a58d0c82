-- measureValueCompleteness: rows with NULL in the field (denominator: all rows).
SELECT @check_index AS check_index,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t WHERE t.@cdm_field IS NULL) AS num_violated_rows,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t) AS num_denominator_rows
