-- One observation period per person touched by a load run: from the first to the last date of any of the
-- person's records (the source gives no enrolment); the death date, when known, is a record too.
-- observation_period_id = person_id (one period per person). Plain SQL valid on DuckDB and PostgreSQL.
insert into @cdm_schema.observation_period
  (observation_period_id, person_id, observation_period_start_date, observation_period_end_date,
   period_type_concept_id)
select e.person_id, e.person_id, min(e.d0), max(e.d1), @period_type_concept_id
from (
  select person_id, condition_start_date as d0, coalesce(condition_end_date, condition_start_date) as d1
    from @cdm_schema.condition_occurrence
  union all
  select person_id, drug_exposure_start_date, drug_exposure_end_date from @cdm_schema.drug_exposure
  union all
  select person_id, procedure_date, coalesce(procedure_end_date, procedure_date) from @cdm_schema.procedure_occurrence
  union all
  select person_id, measurement_date, measurement_date from @cdm_schema.measurement
  union all
  select person_id, observation_date, observation_date from @cdm_schema.observation
  union all
  select person_id, visit_start_date, visit_end_date from @cdm_schema.visit_occurrence
  union all
  select person_id, device_exposure_start_date, coalesce(device_exposure_end_date, device_exposure_start_date)
    from @cdm_schema.device_exposure
  union all
  select person_id, death_date, death_date from @cdm_schema.death
) e
where e.person_id in (select t.person_id from @etl_schema.touched_person t where t.run_id = :run_id)
group by e.person_id
