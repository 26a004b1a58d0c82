-- condition_era: one row per person, condition concept and era, as OHDSI's era builder makes it.
-- Occurrences of the same standard concept whose gap is at most @era_pad days (next start - previous end
-- <= @era_pad) join one era; an occurrence without an end date lasts one day. Replaces the table's rows.
-- Parameters: @cdm_database_schema, @era_pad (30).

DELETE FROM @cdm_database_schema.condition_era;

WITH condition_target AS (
  SELECT co.condition_occurrence_id, co.person_id, co.condition_concept_id,
         co.condition_start_date AS start_date,
         CASE WHEN co.condition_end_date >= co.condition_start_date THEN co.condition_end_date
              WHEN co.condition_end_date IS NULL THEN DATEADD(day, 1, co.condition_start_date)
              ELSE co.condition_start_date END AS end_date
  FROM @cdm_database_schema.condition_occurrence co
  WHERE co.condition_concept_id <> 0
),
era_end AS (
  SELECT person_id, condition_concept_id, DATEADD(day, -@era_pad, event_date) AS end_date
  FROM (
    SELECT person_id, condition_concept_id, event_date, event_type,
           MAX(start_ordinal) OVER (PARTITION BY person_id, condition_concept_id
                                    ORDER BY event_date, event_type ROWS UNBOUNDED PRECEDING) AS start_ordinal,
           ROW_NUMBER() OVER (PARTITION BY person_id, condition_concept_id
                              ORDER BY event_date, event_type) AS overall_ord
    FROM (
      SELECT person_id, condition_concept_id, start_date AS event_date, -1 AS event_type,
             ROW_NUMBER() OVER (PARTITION BY person_id, condition_concept_id ORDER BY start_date) AS start_ordinal
      FROM condition_target
      UNION ALL
      SELECT person_id, condition_concept_id, DATEADD(day, @era_pad, end_date) AS event_date, 1 AS event_type,
             CAST(NULL AS BIGINT) AS start_ordinal
      FROM condition_target
    ) raw_events
  ) e
  WHERE 2 * e.start_ordinal - e.overall_ord = 0
),
occurrence_era AS (
  SELECT t.condition_occurrence_id, t.person_id, t.condition_concept_id, t.start_date,
         MIN(e.end_date) AS era_end_date
  FROM condition_target t
  JOIN era_end e ON e.person_id = t.person_id AND e.condition_concept_id = t.condition_concept_id
                AND e.end_date >= t.start_date
  GROUP BY t.condition_occurrence_id, t.person_id, t.condition_concept_id, t.start_date
),
era AS (
  SELECT person_id, condition_concept_id, MIN(start_date) AS era_start_date, era_end_date,
         COUNT(*) AS occurrence_count
  FROM occurrence_era
  GROUP BY person_id, condition_concept_id, era_end_date
)
INSERT INTO @cdm_database_schema.condition_era (condition_era_id, person_id, condition_concept_id,
                                                condition_era_start_date, condition_era_end_date,
                                                condition_occurrence_count)
SELECT ROW_NUMBER() OVER (ORDER BY person_id, condition_concept_id, era_start_date) AS condition_era_id,
       person_id, condition_concept_id, era_start_date, era_end_date, occurrence_count
FROM era;
