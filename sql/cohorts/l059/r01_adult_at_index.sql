-- rule: R1
-- criterion: incl. 1
-- name: Age >= 18 at index
-- description: age >= @min_age on the index date, from the full birth date where month and day are known, else from the birth year.
INSERT INTO @scratch_database_schema.@inclusion_table (rule_id, person_id)
SELECT 0, q.person_id
FROM @scratch_database_schema.@qualified_table q
JOIN @cdm_database_schema.person p ON p.person_id = q.person_id
WHERE (p.month_of_birth IS NOT NULL AND p.day_of_birth IS NOT NULL
       AND (YEAR(q.index_date) - p.year_of_birth) * 10000 + MONTH(q.index_date) * 100 + DAY(q.index_date)
           - p.month_of_birth * 100 - p.day_of_birth >= @min_age * 10000)
   OR ((p.month_of_birth IS NULL OR p.day_of_birth IS NULL)
       AND YEAR(q.index_date) - p.year_of_birth >= @min_age);
