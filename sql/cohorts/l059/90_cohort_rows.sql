-- The cohort: entrants meeting all 13 rules (mask 8191 = 2^13 - 1); an earlier run of the same id is replaced.
DELETE FROM @results_database_schema.@target_cohort_table WHERE cohort_definition_id = @target_cohort_id;
INSERT INTO @results_database_schema.@target_cohort_table (cohort_definition_id, subject_id, cohort_start_date, cohort_end_date)
SELECT @target_cohort_id, q.person_id, q.index_date, q.cohort_end_date
FROM @scratch_database_schema.@qualified_table q
JOIN @scratch_database_schema.@mask_table m ON m.person_id = q.person_id
WHERE m.inclusion_rule_mask = 8191;
