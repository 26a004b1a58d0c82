-- rule: R9
-- criterion: description ("anlotinib >= 6 weeks")
-- name: Anlotinib >= 6 weeks
-- description: the anlotinib era that starts at index (exposures merged while the next starts <= @era_gap_days days after the latest end so far, as OHDSI drug eras) covers >= @min_anlotinib_days days counting its first and last day.
WITH ex AS (
  SELECT d.person_id, d.start_date, d.end_date,
    MAX(d.end_date) OVER (PARTITION BY d.person_id ORDER BY d.start_date, d.end_date
                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
  FROM @scratch_database_schema.@events_table d
  WHERE d.codeset_id = 1
), marked AS (
  SELECT person_id, end_date,
    SUM(CASE WHEN prev_end IS NULL OR start_date > DATEADD(day, @era_gap_days, prev_end) THEN 1 ELSE 0 END)
      OVER (PARTITION BY person_id ORDER BY start_date, end_date ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS era_number
  FROM ex
), first_era AS (
  SELECT person_id, MAX(end_date) AS era_end
  FROM marked
  WHERE era_number = 1
  GROUP BY person_id
)
INSERT INTO @scratch_database_schema.@inclusion_table (rule_id, person_id)
SELECT 8, q.person_id
FROM @scratch_database_schema.@qualified_table q
JOIN first_era f ON f.person_id = q.person_id
WHERE DATEADD(day, 1, f.era_end) >= DATEADD(day, @min_anlotinib_days, q.index_date);
