-- rule: R9
-- criterion: description ("anlotinib >= 6 weeks")
-- name: Anlotinib >= 6 weeks
-- description: the anlotinib era that starts at index (exposures merged while the next starts <= @era_gap_days days after the latest end so far, as OHDSI drug eras) covers >= @min_anlotinib_days days counting its first and last day.
-- One ordered pass: prev_end is the latest end among the exposures before (start, end order). The first era
-- ends before the first later exposure that starts > @era_gap_days days after prev_end (the first break, by
-- (start, end)); it holds the first exposure and every exposure ordered before that break.
-- Only exposures starting by index + @min_anlotinib_days + @era_gap_days days are read: the verdict is the
-- same. Either the first break starts by then (the first era holds only such exposures), or the exposures
-- up to then form one era: if it reaches index + @min_anlotinib_days - 1 the rule holds whatever follows;
-- if not, it ends before index + @min_anlotinib_days - 1, so any later exposure starts more than
-- @era_gap_days days after it, which is a break, and the era ends there too.
WITH ex AS (
  SELECT d.person_id, d.start_date, d.end_date,
    MAX(d.end_date) OVER (PARTITION BY d.person_id ORDER BY d.start_date, d.end_date
                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
  FROM @scratch_database_schema.@events_table d
  JOIN @scratch_database_schema.@qualified_table q ON q.person_id = d.person_id
  WHERE d.codeset_id = 1 AND d.start_date <= DATEADD(day, @min_anlotinib_days + @era_gap_days, q.index_date)
), breaks AS (
  SELECT person_id, start_date, end_date
  FROM ex
  WHERE prev_end IS NOT NULL AND start_date > DATEADD(day, @era_gap_days, prev_end)
), first_break AS (
  SELECT b.person_id, b.start_date, MIN(b.end_date) AS end_date
  FROM breaks b
  JOIN (SELECT person_id, MIN(start_date) AS start_date FROM breaks GROUP BY person_id) f
    ON f.person_id = b.person_id AND f.start_date = b.start_date
  GROUP BY b.person_id, b.start_date
), first_era AS (
  SELECT ex.person_id, MAX(ex.end_date) AS era_end
  FROM ex
  LEFT JOIN first_break fb ON fb.person_id = ex.person_id
  WHERE ex.prev_end IS NULL OR fb.person_id IS NULL OR ex.start_date < fb.start_date
     OR (ex.start_date = fb.start_date AND ex.end_date < fb.end_date)
  GROUP BY ex.person_id
)
INSERT INTO @scratch_database_schema.@inclusion_table (rule_id, person_id)
SELECT 8, q.person_id
FROM @scratch_database_schema.@qualified_table q
JOIN first_era f ON f.person_id = q.person_id
WHERE DATEADD(day, 1, f.era_end) >= DATEADD(day, @min_anlotinib_days, q.index_date);
