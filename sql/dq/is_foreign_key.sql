-- isForeignKey: rows with a value that does not exist in the referenced table, e.g. a concept id missing
-- from concept (denominator: all rows).
SELECT @check_index AS check_index,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t
    WHERE t.@cdm_field IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM @cdm_schema.@fk_table f WHERE f.@fk_field = t.@cdm_field)) AS num_violated_rows,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t) AS num_denominator_rows
