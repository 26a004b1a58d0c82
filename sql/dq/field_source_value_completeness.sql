-- sourceValueCompleteness: distinct source values whose standard concept is 0
-- (denominator: distinct source values, NULL counted as one).
SELECT @check_index AS check_index,
  (SELECT COUNT_BIG(DISTINCT t.@cdm_field) FROM @cdm_schema.@cdm_table t
    WHERE t.@standard_field = 0) AS num_violated_rows,
  (SELECT COUNT_BIG(DISTINCT t.@cdm_field)
          + MAX(CASE WHEN t.@cdm_field IS NULL THEN 1 ELSE 0 END)
     FROM @cdm_schema.@cdm_table t) AS num_denominator_rows
