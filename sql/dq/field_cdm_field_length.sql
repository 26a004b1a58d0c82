-- cdmFieldLength (L059): rows whose text is longer than the field's VARCHAR(n) in the specification
-- (denominator: non-NULL rows).
SELECT @check_index AS check_index,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t WHERE LEN(t.@cdm_field) > @max_length) AS num_violated_rows,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t WHERE t.@cdm_field IS NOT NULL) AS num_denominator_rows
