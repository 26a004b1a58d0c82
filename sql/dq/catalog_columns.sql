-- The columns and types present in the CDM schema (cdmTable, cdmField, cdmDatatype).
SELECT LOWER(c.table_name) AS table_name, LOWER(c.column_name) AS column_name, LOWER(c.data_type) AS data_type
FROM information_schema.columns c
WHERE c.table_schema = :cdm_schema
