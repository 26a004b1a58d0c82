-- Drop the run's scratch tables (also run when the build fails).
DROP TABLE IF EXISTS @scratch_database_schema.@codeset_table;
DROP TABLE IF EXISTS @scratch_database_schema.@entry_table;
DROP TABLE IF EXISTS @scratch_database_schema.@events_table;
DROP TABLE IF EXISTS @scratch_database_schema.@values_table;
DROP TABLE IF EXISTS @scratch_database_schema.@qualified_table;
DROP TABLE IF EXISTS @scratch_database_schema.@inclusion_table;
DROP TABLE IF EXISTS @scratch_database_schema.@cycle_table;
DROP TABLE IF EXISTS @scratch_database_schema.@mask_table;
