-- Default data cut-off (COHORT.md, Outcomes): the latest observation_period_end_date in the CDM.
SELECT MAX(observation_period_end_date) AS data_cutoff
FROM @cdm_database_schema.observation_period;
