-- drug_era: one row per person, ingredient and era, as OHDSI's era builder makes it.
-- Each exposure is rolled up to its ingredient(s) through concept_ancestor (an ingredient-level exposure
-- reaches itself through its self row). Overlapping exposures first merge into sub-exposures (no gap), then
-- sub-exposures whose gap is at most @era_pad days (next start - previous end <= @era_pad) join one era.
-- gap_days = days of the era not covered by a sub-exposure. Replaces the table's rows (idempotent).
-- Parameters: @cdm_database_schema, @era_pad (30).

DELETE FROM @cdm_database_schema.drug_era;

WITH drug_target AS (
  SELECT d.drug_exposure_id, d.person_id, ca.ancestor_concept_id AS ingredient_concept_id,
         d.drug_exposure_start_date AS start_date,
         CASE WHEN d.drug_exposure_end_date >= d.drug_exposure_start_date THEN d.drug_exposure_end_date
              WHEN d.drug_exposure_end_date IS NULL AND d.days_supply > 0
                THEN DATEADD(day, d.days_supply, d.drug_exposure_start_date)
              WHEN d.drug_exposure_end_date IS NULL THEN DATEADD(day, 1, d.drug_exposure_start_date)
              ELSE d.drug_exposure_start_date END AS end_date
  FROM @cdm_database_schema.drug_exposure d
  JOIN @cdm_database_schema.concept_ancestor ca ON ca.descendant_concept_id = d.drug_concept_id
  JOIN @cdm_database_schema.concept c ON c.concept_id = ca.ancestor_concept_id
  WHERE c.concept_class_id = 'Ingredient'
    AND d.drug_concept_id <> 0
    AND COALESCE(d.days_supply, 0) >= 0
),
-- ends of the sub-exposures: an end event that closes every start seen so far
sub_end AS (
  SELECT person_id, ingredient_concept_id, event_date AS end_date
  FROM (
    SELECT person_id, ingredient_concept_id, event_date, event_type,
           MAX(start_ordinal) OVER (PARTITION BY person_id, ingredient_concept_id
                                    ORDER BY event_date, event_type ROWS UNBOUNDED PRECEDING) AS start_ordinal,
           ROW_NUMBER() OVER (PARTITION BY person_id, ingredient_concept_id
                              ORDER BY event_date, event_type) AS overall_ord
    FROM (
      SELECT person_id, ingredient_concept_id, start_date AS event_date, -1 AS event_type,
             ROW_NUMBER() OVER (PARTITION BY person_id, ingredient_concept_id ORDER BY start_date) AS start_ordinal
      FROM drug_target
      UNION ALL
      SELECT person_id, ingredient_concept_id, end_date AS event_date, 1 AS event_type,
             CAST(NULL AS BIGINT) AS start_ordinal
      FROM drug_target
    ) raw_events
  ) e
  WHERE 2 * e.start_ordinal - e.overall_ord = 0
),
exposure_sub_end AS (
  SELECT t.drug_exposure_id, t.person_id, t.ingredient_concept_id, t.start_date, MIN(e.end_date) AS sub_end_date
  FROM drug_target t
  JOIN sub_end e ON e.person_id = t.person_id AND e.ingredient_concept_id = t.ingredient_concept_id
                AND e.end_date >= t.start_date
  GROUP BY t.drug_exposure_id, t.person_id, t.ingredient_concept_id, t.start_date
),
sub_exposure AS (
  SELECT person_id, ingredient_concept_id, MIN(start_date) AS start_date, sub_end_date AS end_date,
         COUNT(*) AS exposure_count
  FROM exposure_sub_end
  GROUP BY person_id, ingredient_concept_id, sub_end_date
),
-- ends of the eras: the same sweep over sub-exposures whose ends are padded by @era_pad days
era_end AS (
  SELECT person_id, ingredient_concept_id, DATEADD(day, -@era_pad, event_date) AS end_date
  FROM (
    SELECT person_id, ingredient_concept_id, event_date, event_type,
           MAX(start_ordinal) OVER (PARTITION BY person_id, ingredient_concept_id
                                    ORDER BY event_date, event_type ROWS UNBOUNDED PRECEDING) AS start_ordinal,
           ROW_NUMBER() OVER (PARTITION BY person_id, ingredient_concept_id
                              ORDER BY event_date, event_type) AS overall_ord
    FROM (
      SELECT person_id, ingredient_concept_id, start_date AS event_date, -1 AS event_type,
             ROW_NUMBER() OVER (PARTITION BY person_id, ingredient_concept_id ORDER BY start_date) AS start_ordinal
      FROM sub_exposure
      UNION ALL
      SELECT person_id, ingredient_concept_id, DATEADD(day, @era_pad, end_date) AS event_date, 1 AS event_type,
             CAST(NULL AS BIGINT) AS start_ordinal
      FROM sub_exposure
    ) raw_events
  ) e
  WHERE 2 * e.start_ordinal - e.overall_ord = 0
),
sub_era AS (
  SELECT s.person_id, s.ingredient_concept_id, s.start_date, s.end_date, s.exposure_count,
         MIN(e.end_date) AS era_end_date
  FROM sub_exposure s
  JOIN era_end e ON e.person_id = s.person_id AND e.ingredient_concept_id = s.ingredient_concept_id
                AND e.end_date >= s.start_date
  GROUP BY s.person_id, s.ingredient_concept_id, s.start_date, s.end_date, s.exposure_count
),
era AS (
  SELECT person_id, ingredient_concept_id, MIN(start_date) AS era_start_date, era_end_date,
         SUM(exposure_count) AS exposure_count,
         DATEDIFF(day, MIN(start_date), era_end_date) - SUM(DATEDIFF(day, start_date, end_date)) AS gap_days
  FROM sub_era
  GROUP BY person_id, ingredient_concept_id, era_end_date
)
INSERT INTO @cdm_database_schema.drug_era (drug_era_id, person_id, drug_concept_id, drug_era_start_date,
                                           drug_era_end_date, drug_exposure_count, gap_days)
SELECT ROW_NUMBER() OVER (ORDER BY person_id, ingredient_concept_id, era_start_date) AS drug_era_id,
       person_id, ingredient_concept_id, era_start_date, era_end_date, exposure_count, gap_days
FROM era;
