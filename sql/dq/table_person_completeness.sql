-- measurePersonCompleteness: persons with no record in the table (denominator: all persons).
SELECT @check_index AS check_index,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.person p
    WHERE NOT EXISTS (SELECT 1 FROM @cdm_schema.@cdm_table t WHERE t.person_id = p.person_id)) AS num_violated_rows,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.person p) AS num_denominator_rows
