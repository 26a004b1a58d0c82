-- One analysis row per person of cohort @target_cohort_id (COHORT.md, Outcomes; DESIGN §7).
-- Time zero = cohort_start_date (the person's first entry); nothing after @data_cutoff counts.
-- Works for any cohort: OS needs only death and observation_period; the other columns stay NULL when the
-- facts are not recorded. Concept ids arrive as lists resolved from mappings/concept_sets/outcomes/.
WITH entries AS (
  SELECT subject_id AS person_id, cohort_start_date AS index_date, cohort_end_date,
         ROW_NUMBER() OVER (PARTITION BY subject_id ORDER BY cohort_start_date, cohort_end_date) AS rn
  FROM @results_database_schema.@cohort_table
  WHERE cohort_definition_id = @target_cohort_id
    AND cohort_start_date <= CAST(@data_cutoff AS DATE)
),
cohort AS (
  SELECT person_id, index_date, cohort_end_date FROM entries WHERE rn = 1
),
obs AS (
  -- the observation period holding the index date: its end is the last date known alive
  SELECT c.person_id, MAX(op.observation_period_end_date) AS obs_end
  FROM cohort c
  JOIN @cdm_database_schema.observation_period op
    ON op.person_id = c.person_id
   AND op.observation_period_start_date <= c.index_date
   AND op.observation_period_end_date >= c.index_date
  GROUP BY c.person_id
),
dth AS (
  SELECT c.person_id, MIN(d.death_date) AS death_date
  FROM cohort c
  JOIN @cdm_database_schema.death d ON d.person_id = c.person_id
  WHERE d.death_date <= CAST(@data_cutoff AS DATE)
  GROUP BY c.person_id
),
assess AS (
  -- tumour assessments after index; rank 1 CR, 2 PR, 3 SD, 4 PD, 5 NE (an unknown value counts as NE)
  SELECT c.person_id, o.observation_date AS assess_date,
         CASE WHEN o.value_as_concept_id IN (@response_cr_ids) THEN 1
              WHEN o.value_as_concept_id IN (@response_pr_ids) THEN 2
              WHEN o.value_as_concept_id IN (@response_sd_ids) THEN 3
              WHEN o.value_as_concept_id IN (@response_pd_ids) THEN 4
              ELSE 5 END AS response_rank
  FROM cohort c
  JOIN @cdm_database_schema.observation o ON o.person_id = c.person_id
  WHERE o.observation_concept_id IN (@tumour_assessment_ids)
    AND o.observation_date > c.index_date
    AND o.observation_date <= CAST(@data_cutoff AS DATE)
),
assess_summary AS (
  SELECT person_id,
         MIN(CASE WHEN response_rank = 4 THEN assess_date END) AS first_pd_date,
         MAX(assess_date) AS last_assess_date,
         COUNT(*) AS n_assessments
  FROM assess
  GROUP BY person_id
),
next_tx AS (
  -- the start of the next line of therapy: an antineoplastic drug after index that is not the maintenance
  -- regimen (anlotinib, PD-(L)1 agents)
  SELECT c.person_id, MIN(de.drug_exposure_start_date) AS next_therapy_date
  FROM cohort c
  JOIN @cdm_database_schema.drug_exposure de ON de.person_id = c.person_id
  WHERE de.drug_concept_id IN (@next_therapy_ids)
    -- CASE, not NOT IN: an empty set renders as (NULL), and NOT IN (NULL) would drop every row
    AND CASE WHEN de.drug_concept_id IN (@anlotinib_ids) OR de.drug_concept_id IN (@pd1_agents_ids)
             THEN 1 ELSE 0 END = 0
    AND de.drug_exposure_start_date > c.index_date
    AND de.drug_exposure_start_date <= CAST(@data_cutoff AS DATE)
  GROUP BY c.person_id
),
bor AS (
  -- best overall response up to and including the first PD, and no later than the start of the next
  -- therapy (DESIGN §7); SD counts only >= @sd_min_days after index
  SELECT a.person_id,
         MIN(CASE WHEN a.response_rank = 3 AND a.assess_date < DATEADD(day, @sd_min_days, c.index_date) THEN 5
                  ELSE a.response_rank END) AS best_response_rank
  FROM assess a
  JOIN cohort c ON c.person_id = a.person_id
  JOIN assess_summary s ON s.person_id = a.person_id
  LEFT JOIN next_tx n ON n.person_id = a.person_id
  WHERE (s.first_pd_date IS NULL OR a.assess_date <= s.first_pd_date)
    AND (n.next_therapy_date IS NULL OR a.assess_date <= n.next_therapy_date)
  GROUP BY a.person_id
),
ecog_ranked AS (
  -- the latest ECOG in [index - @ecog_window_days, index]; on one day the worst value
  SELECT c.person_id, m.value_as_number AS ecog,
         ROW_NUMBER() OVER (PARTITION BY c.person_id
                            ORDER BY m.measurement_date DESC, m.value_as_number DESC) AS rn
  FROM cohort c
  JOIN @cdm_database_schema.measurement m ON m.person_id = c.person_id
  WHERE m.measurement_concept_id IN (@ecog_ids)
    AND m.value_as_number IS NOT NULL
    AND m.measurement_date >= DATEADD(day, -@ecog_window_days, c.index_date)
    AND m.measurement_date <= c.index_date
),
anlotinib AS (
  SELECT c.person_id, de.drug_exposure_start_date,
         COALESCE(de.drug_exposure_end_date,
                  DATEADD(day, de.days_supply - 1, de.drug_exposure_start_date),
                  de.drug_exposure_start_date) AS exposure_end,
         de.drug_concept_id
  FROM cohort c
  JOIN @cdm_database_schema.drug_exposure de ON de.person_id = c.person_id
  WHERE de.drug_concept_id IN (@anlotinib_ids)
    AND de.drug_exposure_start_date >= c.index_date
    AND de.drug_exposure_start_date <= CAST(@data_cutoff AS DATE)
),
last_anlotinib AS (
  SELECT person_id, MAX(exposure_end) AS last_anlotinib_end FROM anlotinib GROUP BY person_id
),
dose_ranked AS (
  -- starting dose: the strength of the exposure starting on the index date
  SELECT a.person_id, ds.amount_value AS dose_value, u.concept_code AS dose_unit,
         ROW_NUMBER() OVER (PARTITION BY a.person_id ORDER BY ds.amount_value DESC) AS rn
  FROM anlotinib a
  JOIN cohort c ON c.person_id = a.person_id AND a.drug_exposure_start_date = c.index_date
  JOIN @cdm_database_schema.drug_strength ds
    ON ds.drug_concept_id = a.drug_concept_id AND ds.ingredient_concept_id IN (@anlotinib_ids)
  LEFT JOIN @cdm_database_schema.concept u ON u.concept_id = ds.amount_unit_concept_id
  WHERE ds.amount_value IS NOT NULL
),
agent_ranked AS (
  -- the PD-(L)1 agent given in [index - @agent_days_before, index + @agent_days_after], named by ingredient
  SELECT c.person_id, COALESCE(ing.concept_name, dc.concept_name) AS agent,
         ROW_NUMBER() OVER (PARTITION BY c.person_id
                            ORDER BY de.drug_exposure_start_date, COALESCE(ing.concept_name, dc.concept_name)) AS rn
  FROM cohort c
  JOIN @cdm_database_schema.drug_exposure de ON de.person_id = c.person_id
  LEFT JOIN @cdm_database_schema.concept dc ON dc.concept_id = de.drug_concept_id
  LEFT JOIN (
    SELECT ca.descendant_concept_id, MIN(ic.concept_name) AS concept_name
    FROM @cdm_database_schema.concept_ancestor ca
    JOIN @cdm_database_schema.concept ic ON ic.concept_id = ca.ancestor_concept_id
    WHERE ca.ancestor_concept_id IN (@pd1_ingredients_ids)
    GROUP BY ca.descendant_concept_id
  ) ing ON ing.descendant_concept_id = de.drug_concept_id
  WHERE de.drug_concept_id IN (@pd1_agents_ids)
    AND de.drug_exposure_start_date >= DATEADD(day, -@agent_days_before, c.index_date)
    AND de.drug_exposure_start_date <= DATEADD(day, @agent_days_after, c.index_date)
),
liver AS (
  SELECT DISTINCT c.person_id
  FROM cohort c
  JOIN @cdm_database_schema.condition_occurrence co ON co.person_id = c.person_id
  WHERE co.condition_concept_id IN (@liver_metastasis_ids) AND co.condition_start_date <= c.index_date
  UNION
  SELECT DISTINCT c.person_id
  FROM cohort c
  JOIN @cdm_database_schema.measurement m ON m.person_id = c.person_id
  WHERE m.measurement_concept_id IN (@liver_metastasis_ids) AND m.measurement_date <= c.index_date
),
brain AS (
  SELECT DISTINCT c.person_id
  FROM cohort c
  JOIN @cdm_database_schema.condition_occurrence co ON co.person_id = c.person_id
  WHERE co.condition_concept_id IN (@brain_metastasis_ids) AND co.condition_start_date <= c.index_date
  UNION
  SELECT DISTINCT c.person_id
  FROM cohort c
  JOIN @cdm_database_schema.measurement m ON m.person_id = c.person_id
  WHERE m.measurement_concept_id IN (@brain_metastasis_ids) AND m.measurement_date <= c.index_date
),
times AS (
  SELECT c.person_id, c.index_date, c.cohort_end_date,
         d.death_date,
         -- last date known alive: end of the observation period holding the index date (else the cohort end),
         -- capped at the cut-off
         CASE WHEN COALESCE(o.obs_end, c.cohort_end_date) > CAST(@data_cutoff AS DATE) THEN CAST(@data_cutoff AS DATE)
              ELSE COALESCE(o.obs_end, c.cohort_end_date) END AS last_known_alive,
         s.first_pd_date, s.last_assess_date, s.n_assessments
  FROM cohort c
  LEFT JOIN obs o ON o.person_id = c.person_id
  LEFT JOIN dth d ON d.person_id = c.person_id
  LEFT JOIN assess_summary s ON s.person_id = c.person_id
)
SELECT t.person_id,
       t.index_date,
       t.cohort_end_date,
       p.gender_concept_id,
       p.year_of_birth,
       p.month_of_birth,
       p.day_of_birth,
       -- OS: death, else censored at the end of the observation period (capped at the cut-off)
       CASE WHEN t.death_date IS NOT NULL THEN DATEDIFF(day, t.index_date, t.death_date)
            ELSE DATEDIFF(day, t.index_date, t.last_known_alive) END AS os_days,
       CASE WHEN t.death_date IS NOT NULL THEN 1 ELSE 0 END AS os_event,
       -- PFS: first PD after index or death, whichever first; else censored at the last assessment
       CASE WHEN t.first_pd_date IS NOT NULL AND (t.death_date IS NULL OR t.first_pd_date <= t.death_date)
                 THEN DATEDIFF(day, t.index_date, t.first_pd_date)
            WHEN t.death_date IS NOT NULL THEN DATEDIFF(day, t.index_date, t.death_date)
            WHEN t.last_assess_date IS NOT NULL THEN DATEDIFF(day, t.index_date, t.last_assess_date)
            ELSE 0 END AS pfs_days,
       CASE WHEN t.first_pd_date IS NOT NULL OR t.death_date IS NOT NULL THEN 1 ELSE 0 END AS pfs_event,
       CASE WHEN t.first_pd_date IS NOT NULL AND (t.death_date IS NULL OR t.first_pd_date <= t.death_date)
            THEN 'progression' WHEN t.death_date IS NOT NULL THEN 'death' ELSE NULL END AS pfs_event_type,
       COALESCE(t.n_assessments, 0) AS n_assessments,
       b.best_response_rank,
       e.ecog,
       dr.dose_value,
       dr.dose_unit,
       ag.agent AS pd1_agent,
       CASE WHEN lv.person_id IS NOT NULL THEN 1 ELSE 0 END AS liver_metastasis,
       CASE WHEN br.person_id IS NOT NULL THEN 1 ELSE 0 END AS brain_metastasis,
       la.last_anlotinib_end
FROM times t
JOIN @cdm_database_schema.person p ON p.person_id = t.person_id
LEFT JOIN bor b ON b.person_id = t.person_id
LEFT JOIN ecog_ranked e ON e.person_id = t.person_id AND e.rn = 1
LEFT JOIN dose_ranked dr ON dr.person_id = t.person_id AND dr.rn = 1
LEFT JOIN agent_ranked ag ON ag.person_id = t.person_id AND ag.rn = 1
LEFT JOIN liver lv ON lv.person_id = t.person_id
LEFT JOIN brain br ON br.person_id = t.person_id
LEFT JOIN last_anlotinib la ON la.person_id = t.person_id
ORDER BY t.person_id;
