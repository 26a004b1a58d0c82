-- plausibleAfterBirth (and plausibleTemporalAfter against person.birth_datetime): rows dated before the
-- person's birth; birth = birth_datetime, else year/month/day of birth with the first month / day when
-- missing (denominator: non-NULL rows).
SELECT @check_index AS check_index,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t
     JOIN @cdm_schema.person p ON p.person_id = t.person_id
    WHERE t.@cdm_field IS NOT NULL
      AND CAST(t.@cdm_field AS DATE) < COALESCE(
            CAST(p.birth_datetime AS DATE),
            CAST(CONCAT(CAST(p.year_of_birth AS VARCHAR), '-',
                        CASE WHEN p.month_of_birth BETWEEN 1 AND 12
                             THEN RIGHT(CONCAT('0', CAST(p.month_of_birth AS VARCHAR)), 2) ELSE '01' END, '-',
                        CASE WHEN p.day_of_birth BETWEEN 1 AND 31
                             THEN RIGHT(CONCAT('0', CAST(p.day_of_birth AS VARCHAR)), 2) ELSE '01' END) AS DATE))
  ) AS num_violated_rows,
  (SELECT COUNT_BIG(*) FROM @cdm_schema.@cdm_table t WHERE t.@cdm_field IS NOT NULL) AS num_denominator_rows
