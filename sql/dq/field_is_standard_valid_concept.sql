-- isStandardValidConcept: rows whose concept (other than 0) is not standard or not valid
-- (denominator: all rows).
SELECT @check_index AS check_index,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t
     JOIN @cdm_schema.concept c ON c.concept_id = t.@cdm_field
    WHERE c.concept_id <> 0
      AND (c.standard_concept IS NULL OR c.standard_concept <> 'S' OR c.invalid_reason IS NOT NULL)) AS num_violated_rows,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t) AS num_denominator_rows
