-- plausibleGender: records of a gender-specific concept on persons of another (or unknown) gender
-- (denominator: records of the concept).
SELECT @check_index AS check_index,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t
     JOIN @cdm_schema.person p ON p.person_id = t.person_id
    WHERE t.@cdm_field = @concept_id AND p.gender_concept_id <> @gender_concept_id) AS num_violated_rows,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t WHERE t.@cdm_field = @concept_id) AS num_denominator_rows
