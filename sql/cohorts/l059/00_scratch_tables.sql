-- Scratch tables of one run, named with the run's prefix (@codeset_table, @entry_table, ...) in
-- @scratch_database_schema. No #temp tables: cloud engines would have to emulate them. The caller drops
-- them at the end of the run, also when it fails (99_drop_scratch_tables.sql).
CREATE TABLE @scratch_database_schema.@codeset_table (
  codeset_id INT NOT NULL,
  concept_id BIGINT NOT NULL
);
CREATE TABLE @scratch_database_schema.@entry_table (
  person_id BIGINT NOT NULL,
  index_date DATE NOT NULL,
  op_start_date DATE NOT NULL,
  op_end_date DATE NOT NULL,
  cohort_end_date DATE NOT NULL
);
CREATE TABLE @scratch_database_schema.@events_table (
  person_id BIGINT NOT NULL,
  codeset_id INT NOT NULL,
  start_date DATE NOT NULL,
  end_date DATE
);
CREATE TABLE @scratch_database_schema.@values_table (
  person_id BIGINT NOT NULL,
  codeset_id INT NOT NULL,
  start_date DATE NOT NULL,
  value_as_number FLOAT,
  value_as_concept_id BIGINT,
  range_high FLOAT
);
CREATE TABLE @scratch_database_schema.@qualified_table (
  person_id BIGINT NOT NULL,
  index_date DATE NOT NULL,
  op_start_date DATE NOT NULL,
  op_end_date DATE NOT NULL,
  cohort_end_date DATE NOT NULL,
  sclc_date DATE,
  es_date DATE,
  induction_start DATE
);
CREATE TABLE @scratch_database_schema.@inclusion_table (
  rule_id INT NOT NULL,
  person_id BIGINT NOT NULL
);
CREATE TABLE @scratch_database_schema.@cycle_table (
  person_id BIGINT NOT NULL,
  close_to_previous INT NOT NULL,
  cycle_date DATE NOT NULL
);
CREATE TABLE @scratch_database_schema.@mask_table (
  person_id BIGINT NOT NULL,
  inclusion_rule_mask BIGINT NOT NULL
);
