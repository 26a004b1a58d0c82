-- isPrimaryKey: rows whose key value occurs more than once (denominator: all rows).
SELECT @check_index AS check_index,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t
    WHERE t.@cdm_field IN (SELECT d.@cdm_field FROM @cdm_schema.@cdm_table d
                            GROUP BY d.@cdm_field HAVING COUNT_BIG(*) > 1)) AS num_violated_rows,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t) AS num_denominator_rows
