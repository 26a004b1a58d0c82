-- Circe's inclusion statistics: mask counts (mode 0 = events, mode 1 = best event per person; identical
-- here since each person has one entry event), per-rule counts (gain = persons failing only that rule)
-- and summary counts. 8191 = 2^13 - 1: all 13 rules met. Persons meeting a rule are counted from the few
-- distinct masks (bit k set: floor(mask / 2^k) > 2 floor(mask / 2^(k+1)); no % operator, which database
-- drivers read as a placeholder) instead of from the long list of (rule, person) rows.
DELETE FROM @results_database_schema.cohort_inclusion_result WHERE cohort_definition_id = @target_cohort_id;
INSERT INTO @results_database_schema.cohort_inclusion_result (cohort_definition_id, inclusion_rule_mask, person_count, mode_id)
SELECT @target_cohort_id, m.inclusion_rule_mask, COUNT(*), modes.mode_id
FROM @scratch_database_schema.@mask_table m
CROSS JOIN (SELECT 0 AS mode_id UNION ALL SELECT 1 AS mode_id) modes
GROUP BY m.inclusion_rule_mask, modes.mode_id;
DELETE FROM @results_database_schema.cohort_inclusion_stats WHERE cohort_definition_id = @target_cohort_id;
INSERT INTO @results_database_schema.cohort_inclusion_stats (cohort_definition_id, rule_sequence, person_count, gain_count, person_total, mode_id)
SELECT @target_cohort_id, r.rule_sequence,
  COALESCE(met.person_count, 0), COALESCE(gain.gain_count, 0), total.person_total, modes.mode_id
FROM @results_database_schema.cohort_inclusion r
CROSS JOIN (SELECT COUNT(*) AS person_total FROM @scratch_database_schema.@qualified_table) total
CROSS JOIN (SELECT 0 AS mode_id UNION ALL SELECT 1 AS mode_id) modes
LEFT JOIN (
  SELECT r2.rule_sequence, SUM(m.mask_count) AS person_count
  FROM (
    SELECT inclusion_rule_mask, COUNT(*) AS mask_count
    FROM @scratch_database_schema.@mask_table
    GROUP BY inclusion_rule_mask
  ) m
  JOIN @results_database_schema.cohort_inclusion r2
    ON r2.cohort_definition_id = @target_cohort_id
    AND FLOOR(CAST(m.inclusion_rule_mask AS FLOAT) / POWER(CAST(2 AS FLOAT), r2.rule_sequence))
        > 2 * FLOOR(CAST(m.inclusion_rule_mask AS FLOAT) / POWER(CAST(2 AS FLOAT), r2.rule_sequence + 1))
  GROUP BY r2.rule_sequence
) met ON met.rule_sequence = r.rule_sequence
LEFT JOIN (
  SELECT inclusion_rule_mask, COUNT(*) AS gain_count
  FROM @scratch_database_schema.@mask_table
  GROUP BY inclusion_rule_mask
) gain ON gain.inclusion_rule_mask = 8191 - CAST(POWER(CAST(2 AS BIGINT), r.rule_sequence) AS BIGINT)
WHERE r.cohort_definition_id = @target_cohort_id;
DELETE FROM @results_database_schema.cohort_summary_stats WHERE cohort_definition_id = @target_cohort_id;
INSERT INTO @results_database_schema.cohort_summary_stats (cohort_definition_id, base_count, final_count, mode_id)
SELECT @target_cohort_id, base.n, final_q.n, modes.mode_id
FROM (SELECT COUNT(*) AS n FROM @scratch_database_schema.@qualified_table) base
CROSS JOIN (SELECT COUNT(*) AS n FROM @scratch_database_schema.@mask_table WHERE inclusion_rule_mask = 8191) final_q
CROSS JOIN (SELECT 0 AS mode_id UNION ALL SELECT 1 AS mode_id) modes;
