-- rule: R5
-- criterion: incl. 5
-- name: 4-6 cycles of induction chemoimmunotherapy
-- description: between induction start and the day before index: @min_cycles-@max_cycles platinum cycles (administration dates; a date counts as a new cycle when >= @cycle_gap_days days after the previous counted one), at least one etoposide and at least one PD-(L)1 administration.
-- Cycles are counted step by step in the run's cycle table: step 0 holds the administration dates, step k+1
-- the first date >= @cycle_gap_days days after step k's (no recursive SQL: Spark and several engines lack
-- it; one small INSERT per step keeps every engine's plan flat). Ten steps distinguish up to 10 cycles, so
-- @max_cycles may be at most 9.
INSERT INTO @scratch_database_schema.@cycle_table (person_id, cycle_number, cycle_date)
SELECT DISTINCT ev.person_id, 0, ev.start_date
FROM @scratch_database_schema.@events_table ev
JOIN @scratch_database_schema.@qualified_table q ON q.person_id = ev.person_id
WHERE ev.codeset_id = 5 AND ev.start_date >= q.induction_start AND ev.start_date < q.index_date;
INSERT INTO @scratch_database_schema.@cycle_table (person_id, cycle_number, cycle_date)
SELECT person_id, 1, MIN(cycle_date)
FROM @scratch_database_schema.@cycle_table
WHERE cycle_number = 0
GROUP BY person_id;
INSERT INTO @scratch_database_schema.@cycle_table (person_id, cycle_number, cycle_date)
SELECT c.person_id, 2, MIN(a.cycle_date)
FROM @scratch_database_schema.@cycle_table c
JOIN @scratch_database_schema.@cycle_table a
  ON a.person_id = c.person_id AND a.cycle_number = 0 AND a.cycle_date >= DATEADD(day, @cycle_gap_days, c.cycle_date)
WHERE c.cycle_number = 1
GROUP BY c.person_id;
INSERT INTO @scratch_database_schema.@cycle_table (person_id, cycle_number, cycle_date)
SELECT c.person_id, 3, MIN(a.cycle_date)
FROM @scratch_database_schema.@cycle_table c
JOIN @scratch_database_schema.@cycle_table a
  ON a.person_id = c.person_id AND a.cycle_number = 0 AND a.cycle_date >= DATEADD(day, @cycle_gap_days, c.cycle_date)
WHERE c.cycle_number = 2
GROUP BY c.person_id;
INSERT INTO @scratch_database_schema.@cycle_table (person_id, cycle_number, cycle_date)
SELECT c.person_id, 4, MIN(a.cycle_date)
FROM @scratch_database_schema.@cycle_table c
JOIN @scratch_database_schema.@cycle_table a
  ON a.person_id = c.person_id AND a.cycle_number = 0 AND a.cycle_date >= DATEADD(day, @cycle_gap_days, c.cycle_date)
WHERE c.cycle_number = 3
GROUP BY c.person_id;
INSERT INTO @scratch_database_schema.@cycle_table (person_id, cycle_number, cycle_date)
SELECT c.person_id, 5, MIN(a.cycle_date)
FROM @scratch_database_schema.@cycle_table c
JOIN @scratch_database_schema.@cycle_table a
  ON a.person_id = c.person_id AND a.cycle_number = 0 AND a.cycle_date >= DATEADD(day, @cycle_gap_days, c.cycle_date)
WHERE c.cycle_number = 4
GROUP BY c.person_id;
INSERT INTO @scratch_database_schema.@cycle_table (person_id, cycle_number, cycle_date)
SELECT c.person_id, 6, MIN(a.cycle_date)
FROM @scratch_database_schema.@cycle_table c
JOIN @scratch_database_schema.@cycle_table a
  ON a.person_id = c.person_id AND a.cycle_number = 0 AND a.cycle_date >= DATEADD(day, @cycle_gap_days, c.cycle_date)
WHERE c.cycle_number = 5
GROUP BY c.person_id;
INSERT INTO @scratch_database_schema.@cycle_table (person_id, cycle_number, cycle_date)
SELECT c.person_id, 7, MIN(a.cycle_date)
FROM @scratch_database_schema.@cycle_table c
JOIN @scratch_database_schema.@cycle_table a
  ON a.person_id = c.person_id AND a.cycle_number = 0 AND a.cycle_date >= DATEADD(day, @cycle_gap_days, c.cycle_date)
WHERE c.cycle_number = 6
GROUP BY c.person_id;
INSERT INTO @scratch_database_schema.@cycle_table (person_id, cycle_number, cycle_date)
SELECT c.person_id, 8, MIN(a.cycle_date)
FROM @scratch_database_schema.@cycle_table c
JOIN @scratch_database_schema.@cycle_table a
  ON a.person_id = c.person_id AND a.cycle_number = 0 AND a.cycle_date >= DATEADD(day, @cycle_gap_days, c.cycle_date)
WHERE c.cycle_number = 7
GROUP BY c.person_id;
INSERT INTO @scratch_database_schema.@cycle_table (person_id, cycle_number, cycle_date)
SELECT c.person_id, 9, MIN(a.cycle_date)
FROM @scratch_database_schema.@cycle_table c
JOIN @scratch_database_schema.@cycle_table a
  ON a.person_id = c.person_id AND a.cycle_number = 0 AND a.cycle_date >= DATEADD(day, @cycle_gap_days, c.cycle_date)
WHERE c.cycle_number = 8
GROUP BY c.person_id;
INSERT INTO @scratch_database_schema.@cycle_table (person_id, cycle_number, cycle_date)
SELECT c.person_id, 10, MIN(a.cycle_date)
FROM @scratch_database_schema.@cycle_table c
JOIN @scratch_database_schema.@cycle_table a
  ON a.person_id = c.person_id AND a.cycle_number = 0 AND a.cycle_date >= DATEADD(day, @cycle_gap_days, c.cycle_date)
WHERE c.cycle_number = 9
GROUP BY c.person_id;
WITH cycles AS (
  SELECT person_id, COUNT(*) AS n_cycles
  FROM @scratch_database_schema.@cycle_table
  WHERE cycle_number > 0
  GROUP BY person_id
), partners AS (
  SELECT ev.person_id,
    SUM(CASE WHEN ev.codeset_id = 6 THEN 1 ELSE 0 END) AS n_etoposide,
    SUM(CASE WHEN ev.codeset_id = 7 THEN 1 ELSE 0 END) AS n_pd1
  FROM @scratch_database_schema.@events_table ev
  JOIN @scratch_database_schema.@qualified_table q ON q.person_id = ev.person_id
  WHERE ev.codeset_id IN (6, 7) AND ev.start_date >= q.induction_start AND ev.start_date < q.index_date
  GROUP BY ev.person_id
)
INSERT INTO @scratch_database_schema.@inclusion_table (rule_id, person_id)
SELECT 4, q.person_id
FROM @scratch_database_schema.@qualified_table q
JOIN cycles c ON c.person_id = q.person_id
JOIN partners p ON p.person_id = q.person_id
WHERE c.n_cycles >= @min_cycles AND c.n_cycles <= @max_cycles AND p.n_etoposide > 0 AND p.n_pd1 > 0;
