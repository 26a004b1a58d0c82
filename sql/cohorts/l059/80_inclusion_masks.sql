-- Per entrant (one entry event per person, so events = persons): the bit mask of the rules it meets, as
-- Circe keeps it (bit k = rule k, 0-based). The rule rows are summed per person first, so the join to the
-- entrants is one row per person rather than one per (person, rule met).
INSERT INTO @scratch_database_schema.@mask_table (person_id, inclusion_rule_mask)
SELECT q.person_id, CAST(COALESCE(i.rule_mask, 0) AS BIGINT)
FROM @scratch_database_schema.@qualified_table q
LEFT JOIN (
  SELECT person_id, SUM(POWER(CAST(2 AS BIGINT), rule_id)) AS rule_mask
  FROM @scratch_database_schema.@inclusion_table
  GROUP BY person_id
) i ON i.person_id = q.person_id;
