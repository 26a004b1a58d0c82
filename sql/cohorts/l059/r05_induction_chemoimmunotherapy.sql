-- rule: R5
-- criterion: incl. 5
-- name: 4-6 cycles of induction chemoimmunotherapy
-- description: between induction start and the day before index: @min_cycles-@max_cycles platinum cycles (administration dates; a date counts as a new cycle when >= @cycle_gap_days days after the previous counted one), at least one etoposide and at least one PD-(L)1 administration.
-- Cycles are counted by following "the next administration >= @cycle_gap_days days after this one" from the
-- first administration, step by step (no recursive SQL: Spark and several engines lack it); ten steps
-- distinguish up to 10 cycles, so @max_cycles may be at most 9.
WITH admin AS (
  SELECT DISTINCT ev.person_id, ev.start_date AS d
  FROM @scratch_database_schema.@events_table ev
  JOIN @scratch_database_schema.@qualified_table q ON q.person_id = ev.person_id
  WHERE ev.codeset_id = 5 AND ev.start_date >= q.induction_start AND ev.start_date < q.index_date
), nxt AS (
  SELECT a.person_id, a.d, MIN(b.d) AS next_d
  FROM admin a
  JOIN admin b ON b.person_id = a.person_id AND b.d >= DATEADD(day, @cycle_gap_days, a.d)
  GROUP BY a.person_id, a.d
), c1 AS (
  SELECT person_id, MIN(d) AS d FROM admin GROUP BY person_id
), c2 AS (
  SELECT c.person_id, n.next_d AS d FROM c1 c JOIN nxt n ON n.person_id = c.person_id AND n.d = c.d
), c3 AS (
  SELECT c.person_id, n.next_d AS d FROM c2 c JOIN nxt n ON n.person_id = c.person_id AND n.d = c.d
), c4 AS (
  SELECT c.person_id, n.next_d AS d FROM c3 c JOIN nxt n ON n.person_id = c.person_id AND n.d = c.d
), c5 AS (
  SELECT c.person_id, n.next_d AS d FROM c4 c JOIN nxt n ON n.person_id = c.person_id AND n.d = c.d
), c6 AS (
  SELECT c.person_id, n.next_d AS d FROM c5 c JOIN nxt n ON n.person_id = c.person_id AND n.d = c.d
), c7 AS (
  SELECT c.person_id, n.next_d AS d FROM c6 c JOIN nxt n ON n.person_id = c.person_id AND n.d = c.d
), c8 AS (
  SELECT c.person_id, n.next_d AS d FROM c7 c JOIN nxt n ON n.person_id = c.person_id AND n.d = c.d
), c9 AS (
  SELECT c.person_id, n.next_d AS d FROM c8 c JOIN nxt n ON n.person_id = c.person_id AND n.d = c.d
), c10 AS (
  SELECT c.person_id, n.next_d AS d FROM c9 c JOIN nxt n ON n.person_id = c.person_id AND n.d = c.d
), cycles AS (
  SELECT person_id, COUNT(*) AS n_cycles
  FROM (
    SELECT person_id FROM c1 UNION ALL SELECT person_id FROM c2 UNION ALL SELECT person_id FROM c3
    UNION ALL SELECT person_id FROM c4 UNION ALL SELECT person_id FROM c5 UNION ALL SELECT person_id FROM c6
    UNION ALL SELECT person_id FROM c7 UNION ALL SELECT person_id FROM c8 UNION ALL SELECT person_id FROM c9
    UNION ALL SELECT person_id FROM c10
  ) counted
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
