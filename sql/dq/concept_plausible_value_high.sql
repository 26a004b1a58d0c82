-- plausibleValueHigh (concept level): records of the concept (in the unit, unless any unit is allowed)
-- with value_as_number above the plausible maximum (denominator: such records with a value).
SELECT @check_index AS check_index,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t
    WHERE t.@cdm_field = @concept_id AND (@any_unit = 1 OR t.unit_concept_id = @unit_concept_id)
      AND t.value_as_number > @plausible_value) AS num_violated_rows,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t
    WHERE t.@cdm_field = @concept_id AND (@any_unit = 1 OR t.unit_concept_id = @unit_concept_id)
      AND t.value_as_number IS NOT NULL) AS num_denominator_rows
