-- measureObservationPeriodOverlap: persons with overlapping or back-to-back observation periods
-- (denominator: persons with an observation period).
SELECT @check_index AS check_index,
  (SELECT COUNT_BIG(DISTINCT a.person_id)
     FROM @cdm_schema.observation_period a
     JOIN @cdm_schema.observation_period b
       ON a.person_id = b.person_id AND a.observation_period_id <> b.observation_period_id
    WHERE (a.observation_period_start_date <= b.observation_period_end_date
           AND a.observation_period_end_date >= b.observation_period_start_date)
       OR DATEADD(day, 1, a.observation_period_end_date) = b.observation_period_start_date) AS num_violated_rows,
  (SELECT COUNT_BIG(DISTINCT o.person_id) FROM @cdm_schema.observation_period o) AS num_denominator_rows
