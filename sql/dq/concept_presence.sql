-- Which of the concepts that concept-level checks name occur in a table (the others are not applicable).
SELECT DISTINCT t.@cdm_field AS concept_id FROM @cdm_schema.@cdm_table t WHERE t.@cdm_field IN (@concept_ids)
