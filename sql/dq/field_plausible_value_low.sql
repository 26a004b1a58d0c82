-- plausibleValueLow: rows with a value below the plausible minimum (denominator: non-NULL rows).
SELECT @check_index AS check_index,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t WHERE t.@cdm_field < @plausible_value) AS num_violated_rows,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t WHERE t.@cdm_field IS NOT NULL) AS num_denominator_rows
