-- Per entrant (one entry event per person, so events = persons): the bit mask of the rules it meets, as
-- Circe keeps it (bit k = rule k, 0-based).
INSERT INTO @scratch_database_schema.@mask_table (person_id, inclusion_rule_mask)
SELECT q.person_id, CAST(COALESCE(SUM(POWER(CAST(2 AS BIGINT), i.rule_id)), 0) AS BIGINT)
FROM @scratch_database_schema.@qualified_table q
LEFT JOIN @scratch_database_schema.@inclusion_table i ON i.person_id = q.person_id
GROUP BY q.person_id;
