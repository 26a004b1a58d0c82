-- rule: R5
-- criterion: incl. 5
-- name: 4-6 cycles of induction chemoimmunotherapy
-- description: between induction start and the day before index: @min_cycles-@max_cycles platinum cycles (administration dates; a date counts as a new cycle when >= @cycle_gap_days days after the previous counted one), at least one etoposide and at least one PD-(L)1 administration.
-- Cycles are counted without recursive SQL (Spark and several engines lack it). The run's cycle table holds
-- the administration dates, each flagged when it lies < @cycle_gap_days days after the date before it
-- (the same date twice included). A person with no flagged date has one cycle per date: each counts. Only
-- the others ("crowded": a split dose over days 1-3, say) need the chain: for each of their distinct
-- dates, the next date that counts after it is the first one >= @cycle_gap_days days later (one
-- self-join); cycle 1 is the first date and cycle k+1 the next date after cycle k, followed through a
-- fixed chain of nine equality joins in one statement. Ten cycles can be told apart, so @max_cycles may
-- be at most 9. The count is chosen per person in the final WHERE (not filtered inside a CTE): planners
-- estimate a filter on an aggregate's output badly, and PostgreSQL then nested-looped over the entrants.
INSERT INTO @scratch_database_schema.@cycle_table (person_id, close_to_previous, cycle_date)
SELECT g.person_id,
  CASE WHEN g.prev_date IS NOT NULL AND g.cycle_date < DATEADD(day, @cycle_gap_days, g.prev_date) THEN 1 ELSE 0 END,
  g.cycle_date
FROM (
  SELECT ev.person_id, ev.start_date AS cycle_date,
    LAG(ev.start_date) OVER (PARTITION BY ev.person_id ORDER BY ev.start_date) AS prev_date
  FROM @scratch_database_schema.@events_table ev
  JOIN @scratch_database_schema.@qualified_table q ON q.person_id = ev.person_id
  WHERE ev.codeset_id = 5 AND ev.start_date >= q.induction_start AND ev.start_date < q.index_date
) g;
WITH spacing AS (
  SELECT person_id, COUNT(*) AS n_dates, SUM(close_to_previous) AS n_close
  FROM @scratch_database_schema.@cycle_table
  GROUP BY person_id
), crowded AS (
  SELECT DISTINCT c.person_id, c.cycle_date
  FROM @scratch_database_schema.@cycle_table c
  JOIN spacing s ON s.person_id = c.person_id
  WHERE s.n_close > 0
), nxt AS (
  SELECT a.person_id, a.cycle_date, MIN(b.cycle_date) AS next_date
  FROM crowded a
  LEFT JOIN crowded b
    ON b.person_id = a.person_id AND b.cycle_date >= DATEADD(day, @cycle_gap_days, a.cycle_date)
  GROUP BY a.person_id, a.cycle_date
), first_cycle AS (
  SELECT person_id, MIN(cycle_date) AS cycle_date
  FROM crowded
  GROUP BY person_id
), chained AS (
  SELECT f.person_id,
    1 + CASE WHEN n1.next_date IS NULL THEN 0 ELSE 1 END
      + CASE WHEN n2.next_date IS NULL THEN 0 ELSE 1 END
      + CASE WHEN n3.next_date IS NULL THEN 0 ELSE 1 END
      + CASE WHEN n4.next_date IS NULL THEN 0 ELSE 1 END
      + CASE WHEN n5.next_date IS NULL THEN 0 ELSE 1 END
      + CASE WHEN n6.next_date IS NULL THEN 0 ELSE 1 END
      + CASE WHEN n7.next_date IS NULL THEN 0 ELSE 1 END
      + CASE WHEN n8.next_date IS NULL THEN 0 ELSE 1 END
      + CASE WHEN n9.next_date IS NULL THEN 0 ELSE 1 END AS n_cycles
  FROM first_cycle f
  LEFT JOIN nxt n1 ON n1.person_id = f.person_id AND n1.cycle_date = f.cycle_date
  LEFT JOIN nxt n2 ON n2.person_id = f.person_id AND n2.cycle_date = n1.next_date
  LEFT JOIN nxt n3 ON n3.person_id = f.person_id AND n3.cycle_date = n2.next_date
  LEFT JOIN nxt n4 ON n4.person_id = f.person_id AND n4.cycle_date = n3.next_date
  LEFT JOIN nxt n5 ON n5.person_id = f.person_id AND n5.cycle_date = n4.next_date
  LEFT JOIN nxt n6 ON n6.person_id = f.person_id AND n6.cycle_date = n5.next_date
  LEFT JOIN nxt n7 ON n7.person_id = f.person_id AND n7.cycle_date = n6.next_date
  LEFT JOIN nxt n8 ON n8.person_id = f.person_id AND n8.cycle_date = n7.next_date
  LEFT JOIN nxt n9 ON n9.person_id = f.person_id AND n9.cycle_date = n8.next_date
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
JOIN spacing s ON s.person_id = q.person_id
LEFT JOIN chained ch ON ch.person_id = q.person_id
JOIN partners p ON p.person_id = q.person_id
WHERE CASE WHEN s.n_close = 0 THEN s.n_dates ELSE ch.n_cycles END >= @min_cycles
  AND CASE WHEN s.n_close = 0 THEN s.n_dates ELSE ch.n_cycles END <= @max_cycles
  AND p.n_etoposide > 0 AND p.n_pd1 > 0;
