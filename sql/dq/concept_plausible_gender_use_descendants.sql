-- plausibleGenderUseDescendants: records of the concepts or their descendants on persons of another
-- (or unknown) gender (denominator: records of those concepts).
SELECT @check_index AS check_index,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t
     JOIN @cdm_schema.person p ON p.person_id = t.person_id
    WHERE t.@cdm_field IN (SELECT ca.descendant_concept_id FROM @cdm_schema.concept_ancestor ca
                            WHERE ca.ancestor_concept_id IN (@concept_ids))
      AND p.gender_concept_id <> @gender_concept_id) AS num_violated_rows,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t
    WHERE t.@cdm_field IN (SELECT ca.descendant_concept_id FROM @cdm_schema.concept_ancestor ca
                            WHERE ca.ancestor_concept_id IN (@concept_ids))) AS num_denominator_rows
