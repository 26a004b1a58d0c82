-- Persons and entries of a cohort, to say clearly when it is empty or missing.
SELECT COUNT(DISTINCT subject_id) AS persons, COUNT(*) AS entries
FROM @results_database_schema.@cohort_table
WHERE cohort_definition_id = @target_cohort_id;
