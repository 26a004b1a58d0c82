-- The cohort's attrition as build-cohort keeps it (results.cohort_attrition), rule by rule.
SELECT rule_sequence, rule_name, persons_remaining, persons_excluded
FROM @results_database_schema.cohort_attrition
WHERE cohort_definition_id = @target_cohort_id
ORDER BY rule_sequence;
