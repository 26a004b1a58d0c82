-- plausibleUnitConceptIds: measurements of the concept with a value but a unit outside the plausible list
-- (-1 in the list stands for no unit; denominator: measurements of the concept with a value).
SELECT @check_index AS check_index,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t
    WHERE t.@cdm_field = @concept_id AND t.value_as_number IS NOT NULL
      AND COALESCE(t.unit_concept_id, -1) NOT IN (@unit_concept_ids)) AS num_violated_rows,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t
    WHERE t.@cdm_field = @concept_id AND t.value_as_number IS NOT NULL) AS num_denominator_rows
