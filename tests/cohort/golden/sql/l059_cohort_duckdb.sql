-- ALTER-L059: ES-SCLC, anlotinib + PD-(L)1 maintenance after chemoimmunotherapy
-- l059-omop 0.1.0; dialect duckdb; definition sha256 32abbeea19a53fb4e010cbbe1080fe19c8f7631a9336fe76f81ba277dce0e3c4
-- parameters: {"autoimmune_lookback_days": 730, "bleeding_lookback_days": 180, "coagulation_lab_days": 30, "cycle_gap_days": 14, "default_aptt_uln": 40, "ecog_lookback_days": 42, "era_gap_days": 30, "induction_lookback_days": 14, "lesion_lookback_days": 42, "ls_free_interval_days": 183, "max_aptt_ratio": 1.5, "max_cycles": 6, "max_ecog": 2, "max_inr": 1.5, "min_age": 18, "min_anlotinib_days": 42, "min_cycles": 4, "min_lesion_mm": 10, "pd1_after_days": 28, "pd1_before_days": 7, "study_end": "2024-12-31", "study_start": "2022-01-01"}

-- 00_scratch_tables.sql
CREATE TABLE results.l059_codeset (
  codeset_id INT NOT NULL,
  concept_id BIGINT NOT NULL
);
CREATE TABLE results.l059_entry (
  person_id BIGINT NOT NULL,
  index_date DATE NOT NULL,
  op_start_date DATE NOT NULL,
  op_end_date DATE NOT NULL,
  cohort_end_date DATE NOT NULL
);
CREATE TABLE results.l059_events (
  person_id BIGINT NOT NULL,
  codeset_id INT NOT NULL,
  start_date DATE NOT NULL,
  end_date DATE
);
CREATE TABLE results.l059_values (
  person_id BIGINT NOT NULL,
  codeset_id INT NOT NULL,
  start_date DATE NOT NULL,
  value_as_number DOUBLE,
  value_as_concept_id BIGINT,
  range_high DOUBLE
);
CREATE TABLE results.l059_qualified (
  person_id BIGINT NOT NULL,
  index_date DATE NOT NULL,
  op_start_date DATE NOT NULL,
  op_end_date DATE NOT NULL,
  cohort_end_date DATE NOT NULL,
  sclc_date DATE,
  es_date DATE,
  induction_start DATE
);
CREATE TABLE results.l059_inclusion (
  rule_id INT NOT NULL,
  person_id BIGINT NOT NULL
);
CREATE TABLE results.l059_cycle (
  person_id BIGINT NOT NULL,
  close_to_previous INT NOT NULL,
  cycle_date DATE NOT NULL
);
CREATE TABLE results.l059_mask (
  person_id BIGINT NOT NULL,
  inclusion_rule_mask BIGINT NOT NULL
);

-- 01_codesets (generated from mappings/concept_sets)
INSERT INTO results.l059_codeset (
  codeset_id,
  concept_id
)
WITH selector AS (
  SELECT
    1 AS codeset_id,
    CAST('L059' AS TEXT(255)) AS vocabulary_id,
    CAST('ANLOTINIB' AS TEXT(255)) AS concept_code,
    CAST(NULL AS TEXT(255)) AS ingredient_name,
    1 AS descendants,
    0 AS excluded
  UNION ALL
  SELECT
    1,
    NULL,
    NULL,
    'anlotinib',
    1,
    0
  UNION ALL
  SELECT
    2,
    'SNOMED',
    '254632001',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    2,
    'ICDO3',
    '8041/3-C34.0',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    2,
    'ICDO3',
    '8041/3-C34.1',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    2,
    'ICDO3',
    '8041/3-C34.2',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    2,
    'ICDO3',
    '8041/3-C34.3',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    2,
    'ICDO3',
    '8041/3-C34.8',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    3,
    'L059',
    'VALG-ES',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    3,
    'Cancer Modifier',
    'Stage-4',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    3,
    'Cancer Modifier',
    'AJCC/UICC-M1',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    3,
    'Cancer Modifier',
    'OMOP4998856',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    3,
    'Cancer Modifier',
    'OMOP4999962',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    3,
    'Cancer Modifier',
    'OMOP4998978',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    3,
    'Cancer Modifier',
    'OMOP5000224',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    3,
    'Cancer Modifier',
    'OMOP5031479',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    3,
    'SNOMED',
    '67841000119103',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    4,
    'L059',
    'VALG-LS',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    4,
    'Cancer Modifier',
    'Stage-1',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    4,
    'Cancer Modifier',
    'Stage-2',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    4,
    'Cancer Modifier',
    'Stage-3',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    5,
    'RxNorm',
    '40048',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    5,
    'RxNorm',
    '2555',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    6,
    'RxNorm',
    '4179',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    7,
    'RxNorm',
    '1792776',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    7,
    'RxNorm',
    '1919503',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    7,
    'RxNorm Extension',
    'OMOP5178890',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    7,
    'RxNorm Extension',
    'OMOP5167408',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    7,
    'RxNorm',
    '2669406',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    7,
    'RxNorm Extension',
    'OMOP5166614',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    7,
    'RxNorm Extension',
    'OMOP5172091',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    7,
    'RxNorm Extension',
    'OMOP5171084',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    7,
    'RxNorm',
    '1547545',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    7,
    'RxNorm',
    '1597876',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    7,
    'L059',
    'BENMELSTOBART',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    7,
    NULL,
    NULL,
    'benmelstobart',
    1,
    0
  UNION ALL
  SELECT
    8,
    'L059',
    'RT',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    9,
    'L059',
    'APATINIB',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    9,
    NULL,
    NULL,
    'apatinib',
    1,
    0
  UNION ALL
  SELECT
    9,
    'RxNorm',
    '253337',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    10,
    'RxNorm',
    '8640',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    10,
    'RxNorm',
    '8638',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    10,
    'RxNorm',
    '6902',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    10,
    'RxNorm',
    '6851',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    10,
    'RxNorm',
    '1256',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    10,
    'RxNorm',
    '5521',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    10,
    'RxNorm',
    '3008',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    10,
    'RxNorm',
    '68149',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    10,
    'RxNorm',
    '9524',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    10,
    'RxNorm',
    '27169',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    10,
    'RxNorm',
    '327361',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    10,
    'RxNorm',
    '191831',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    10,
    'RxNorm',
    '214555',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    11,
    'SNOMED',
    '69896004',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    11,
    'SNOMED',
    '55464009',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    11,
    'SNOMED',
    '89155008',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    11,
    'SNOMED',
    '34000006',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    11,
    'SNOMED',
    '64766004',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    11,
    'SNOMED',
    '9014002',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    11,
    'SNOMED',
    '24700007',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    11,
    'SNOMED',
    '91637004',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    11,
    'SNOMED',
    '353295004',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    11,
    'SNOMED',
    '21983002',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    11,
    'SNOMED',
    '46635009',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    11,
    'SNOMED',
    '396331005',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    11,
    'SNOMED',
    '83901003',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    11,
    'SNOMED',
    '31541009',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    11,
    'SNOMED',
    '363732003',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    11,
    'SNOMED',
    '31996006',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    11,
    'SNOMED',
    '408335007',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    11,
    'SNOMED',
    '413603009',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    11,
    'SNOMED',
    '2897005',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    12,
    'SNOMED',
    '64779008',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    12,
    'SNOMED',
    '234466008',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    12,
    'SNOMED',
    '131148009',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    12,
    'SNOMED',
    '66857006',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    12,
    'SNOMED',
    '67406007',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    12,
    'SNOMED',
    '302215000',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    13,
    'LOINC',
    '6301-6',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    13,
    'LOINC',
    '34714-6',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    14,
    'LOINC',
    '14979-9',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    15,
    'LOINC',
    '89247-1',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    16,
    'L059',
    'RECIST-SOD',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    17,
    'LOINC',
    '88040-1',
    NULL,
    1,
    0
  UNION ALL
  SELECT
    18,
    'L059',
    'RECIST-CR',
    NULL,
    0,
    0
  UNION ALL
  SELECT
    18,
    'L059',
    'RECIST-PR',
    NULL,
    0,
    0
  UNION ALL
  SELECT
    18,
    'L059',
    'RECIST-SD',
    NULL,
    0,
    0
  UNION ALL
  SELECT
    18,
    'L059',
    'RECIST-PD',
    NULL,
    0,
    0
  UNION ALL
  SELECT
    19,
    'L059',
    'RECIST-PD',
    NULL,
    0,
    0
), matched AS (
  SELECT
    s.codeset_id,
    s.descendants,
    s.excluded,
    c.concept_id
  FROM selector AS s
  JOIN cdm.concept AS c
    ON c.vocabulary_id = s.vocabulary_id AND c.concept_code = s.concept_code
  UNION ALL
  SELECT
    s.codeset_id,
    s.descendants,
    s.excluded,
    c.concept_id
  FROM selector AS s
  JOIN cdm.concept AS c
    ON LOWER(c.concept_name) = s.ingredient_name
    AND c.concept_class_id = 'Ingredient'
    AND c.domain_id = 'Drug'
), expanded AS (
  SELECT
    codeset_id,
    excluded,
    concept_id
  FROM matched
  UNION ALL
  SELECT
    m.codeset_id,
    m.excluded,
    ca.descendant_concept_id
  FROM matched AS m
  JOIN cdm.concept_ancestor AS ca
    ON ca.ancestor_concept_id = m.concept_id
  WHERE
    m.descendants = 1
)
SELECT DISTINCT
  i.codeset_id,
  i.concept_id
FROM expanded AS i
LEFT JOIN expanded AS x
  ON x.codeset_id = i.codeset_id AND x.concept_id = i.concept_id AND x.excluded = 1
WHERE
  i.excluded = 0 AND x.concept_id IS NULL;

-- 02_entry_events.sql
INSERT INTO results.l059_entry (
  person_id,
  index_date,
  op_start_date,
  op_end_date,
  cohort_end_date
)
SELECT
  f.person_id,
  f.index_date,
  op.observation_period_start_date,
  op.observation_period_end_date,
  CASE
    WHEN NOT d.death_date IS NULL AND d.death_date < op.observation_period_end_date
    THEN CASE WHEN d.death_date < f.index_date THEN f.index_date ELSE d.death_date END
    ELSE op.observation_period_end_date
  END AS cohort_end_date
FROM (
  SELECT
    de.person_id,
    MIN(de.drug_exposure_start_date) AS index_date
  FROM cdm.drug_exposure AS de
  JOIN results.l059_codeset AS cs
    ON cs.concept_id = de.drug_concept_id AND cs.codeset_id = 1
  GROUP BY
    de.person_id
) AS f
JOIN cdm.observation_period AS op
  ON op.person_id = f.person_id
  AND op.observation_period_start_date <= f.index_date
  AND op.observation_period_end_date >= f.index_date
LEFT JOIN (
  SELECT
    person_id,
    MIN(death_date) AS death_date
  FROM cdm.death
  GROUP BY
    person_id
) AS d
  ON d.person_id = f.person_id
WHERE
  f.index_date >= CAST('2022-01-01' AS DATE)
  AND f.index_date <= CAST('2024-12-31' AS DATE);

-- 03_cohort_events.sql
INSERT INTO results.l059_events (
  person_id,
  codeset_id,
  start_date,
  end_date
)
SELECT
  x.person_id,
  cs.codeset_id,
  x.start_date,
  x.end_date
FROM (
  SELECT
    co.person_id,
    co.condition_concept_id AS concept_id,
    co.condition_start_date AS start_date,
    COALESCE(co.condition_end_date, co.condition_start_date) AS end_date
  FROM cdm.condition_occurrence AS co
  UNION ALL
  SELECT
    de.person_id,
    de.drug_concept_id,
    de.drug_exposure_start_date,
    COALESCE(
      de.drug_exposure_end_date,
      CASE
        WHEN de.days_supply > 0
        THEN (
          de.drug_exposure_start_date + (
            de.days_supply - 1
          )
        )
      END,
      de.drug_exposure_start_date
    )
  FROM cdm.drug_exposure AS de
  UNION ALL
  SELECT
    po.person_id,
    po.procedure_concept_id,
    po.procedure_date,
    COALESCE(po.procedure_end_date, po.procedure_date)
  FROM cdm.procedure_occurrence AS po
  UNION ALL
  SELECT
    m.person_id,
    m.measurement_concept_id,
    m.measurement_date,
    m.measurement_date
  FROM cdm.measurement AS m
  UNION ALL
  SELECT
    o.person_id,
    o.observation_concept_id,
    o.observation_date,
    o.observation_date
  FROM cdm.observation AS o
) AS x
JOIN results.l059_codeset AS cs
  ON cs.concept_id = x.concept_id
JOIN results.l059_entry AS e
  ON e.person_id = x.person_id;
INSERT INTO results.l059_values (
  person_id,
  codeset_id,
  start_date,
  value_as_number,
  value_as_concept_id,
  range_high
)
SELECT
  x.person_id,
  cs.codeset_id,
  x.start_date,
  x.value_as_number,
  x.value_as_concept_id,
  x.range_high
FROM (
  SELECT
    m.person_id,
    m.measurement_concept_id AS concept_id,
    m.measurement_date AS start_date,
    CAST(m.value_as_number AS DOUBLE) AS value_as_number,
    CAST(m.value_as_concept_id AS BIGINT) AS value_as_concept_id,
    CAST(m.range_high AS DOUBLE) AS range_high
  FROM cdm.measurement AS m
  UNION ALL
  SELECT
    o.person_id,
    o.observation_concept_id,
    o.observation_date,
    CAST(o.value_as_number AS DOUBLE),
    CAST(o.value_as_concept_id AS BIGINT),
    CAST(NULL AS DOUBLE)
  FROM cdm.observation AS o
) AS x
JOIN results.l059_codeset AS cs
  ON cs.concept_id = x.concept_id
JOIN results.l059_entry AS e
  ON e.person_id = x.person_id;

-- 04_index_dates.sql
INSERT INTO results.l059_qualified (
  person_id,
  index_date,
  op_start_date,
  op_end_date,
  cohort_end_date,
  sclc_date,
  es_date,
  induction_start
)
WITH sclc AS (
  SELECT
    person_id,
    MIN(start_date) AS sclc_date
  FROM results.l059_events
  WHERE
    codeset_id = 2
  GROUP BY
    person_id
), es AS (
  SELECT
    ev.person_id,
    MIN(ev.start_date) AS es_date
  FROM results.l059_events AS ev
  JOIN sclc
    ON sclc.person_id = ev.person_id
  WHERE
    ev.codeset_id = 3 AND ev.start_date >= sclc.sclc_date
  GROUP BY
    ev.person_id
), induction AS (
  SELECT
    ev.person_id,
    MIN(ev.start_date) AS induction_start
  FROM results.l059_events AS ev
  JOIN es
    ON es.person_id = ev.person_id
  WHERE
    ev.codeset_id = 5 AND ev.start_date >= (
      es.es_date + (
        -14
      )
    )
  GROUP BY
    ev.person_id
)
SELECT
  e.person_id,
  e.index_date,
  e.op_start_date,
  e.op_end_date,
  e.cohort_end_date,
  sclc.sclc_date,
  es.es_date,
  induction.induction_start
FROM results.l059_entry AS e
LEFT JOIN sclc
  ON sclc.person_id = e.person_id
LEFT JOIN es
  ON es.person_id = e.person_id
LEFT JOIN induction
  ON induction.person_id = e.person_id;

-- r01_adult_at_index.sql
INSERT INTO results.l059_inclusion (
  rule_id,
  person_id
)
SELECT
  0,
  q.person_id
FROM results.l059_qualified AS q
JOIN cdm.person AS p
  ON p.person_id = q.person_id
WHERE
  (
    NOT p.month_of_birth IS NULL
    AND NOT p.day_of_birth IS NULL
    AND (
      YEAR(CAST(q.index_date AS DATE)) - p.year_of_birth
    ) * 10000 + MONTH(CAST(q.index_date AS DATE)) * 100 + DAY(CAST(q.index_date AS DATE)) - p.month_of_birth * 100 - p.day_of_birth >= 18 * 10000
  )
  OR (
    (
      p.month_of_birth IS NULL OR p.day_of_birth IS NULL
    )
    AND YEAR(CAST(q.index_date AS DATE)) - p.year_of_birth >= 18
  );

-- r02_es_sclc_by_index.sql
INSERT INTO results.l059_inclusion (
  rule_id,
  person_id
)
SELECT
  1,
  q.person_id
FROM results.l059_qualified AS q
WHERE
  q.sclc_date <= q.index_date AND q.es_date <= q.index_date;

-- r03_no_recent_limited_stage_therapy.sql
INSERT INTO results.l059_inclusion (
  rule_id,
  person_id
)
SELECT
  2,
  q.person_id
FROM results.l059_qualified AS q
LEFT JOIN (
  SELECT DISTINCT
    ls.person_id
  FROM results.l059_events AS ls
  JOIN results.l059_qualified AS q2
    ON q2.person_id = ls.person_id
  WHERE
    ls.codeset_id = 4 AND ls.start_date < q2.es_date
) AS limited
  ON limited.person_id = q.person_id
LEFT JOIN (
  SELECT DISTINCT
    t.person_id
  FROM results.l059_events AS t
  JOIN results.l059_qualified AS q2
    ON q2.person_id = t.person_id
  WHERE
    t.codeset_id IN (5, 6, 7, 8)
    AND t.end_date < q2.es_date
    AND t.end_date > (
      q2.es_date + (
        -183
      )
    )
) AS recent
  ON recent.person_id = q.person_id
WHERE
  limited.person_id IS NULL OR recent.person_id IS NULL;

-- r04_measurable_target_lesion.sql
INSERT INTO results.l059_inclusion (
  rule_id,
  person_id
)
SELECT
  3,
  q.person_id
FROM results.l059_qualified AS q
JOIN (
  SELECT DISTINCT
    m.person_id
  FROM results.l059_values AS m
  JOIN results.l059_qualified AS q2
    ON q2.person_id = m.person_id
  WHERE
    m.codeset_id = 16
    AND m.value_as_number >= 10
    AND m.start_date >= (
      q2.es_date + (
        -42
      )
    )
    AND m.start_date <= q2.index_date
) AS ok
  ON ok.person_id = q.person_id;

-- r05_induction_chemoimmunotherapy.sql
INSERT INTO results.l059_cycle (
  person_id,
  close_to_previous,
  cycle_date
)
SELECT
  g.person_id,
  CASE
    WHEN NOT g.prev_date IS NULL AND g.cycle_date < (
      g.prev_date + (
        14
      )
    )
    THEN 1
    ELSE 0
  END,
  g.cycle_date
FROM (
  SELECT
    ev.person_id,
    ev.start_date AS cycle_date,
    LAG(ev.start_date) OVER (PARTITION BY ev.person_id ORDER BY ev.start_date NULLS FIRST) AS prev_date
  FROM results.l059_events AS ev
  JOIN results.l059_qualified AS q
    ON q.person_id = ev.person_id
  WHERE
    ev.codeset_id = 5
    AND ev.start_date >= q.induction_start
    AND ev.start_date < q.index_date
) AS g;
INSERT INTO results.l059_inclusion (
  rule_id,
  person_id
)
WITH spacing AS (
  SELECT
    person_id,
    COUNT(*) AS n_dates,
    SUM(close_to_previous) AS n_close
  FROM results.l059_cycle
  GROUP BY
    person_id
), crowded AS (
  SELECT DISTINCT
    c.person_id,
    c.cycle_date
  FROM results.l059_cycle AS c
  JOIN spacing AS s
    ON s.person_id = c.person_id
  WHERE
    s.n_close > 0
), nxt AS (
  SELECT
    a.person_id,
    a.cycle_date,
    MIN(b.cycle_date) AS next_date
  FROM crowded AS a
  LEFT JOIN crowded AS b
    ON b.person_id = a.person_id AND b.cycle_date >= (
      a.cycle_date + (
        14
      )
    )
  GROUP BY
    a.person_id,
    a.cycle_date
), first_cycle AS (
  SELECT
    person_id,
    MIN(cycle_date) AS cycle_date
  FROM crowded
  GROUP BY
    person_id
), chained AS (
  SELECT
    f.person_id,
    1 + CASE WHEN n1.next_date IS NULL THEN 0 ELSE 1 END + CASE WHEN n2.next_date IS NULL THEN 0 ELSE 1 END + CASE WHEN n3.next_date IS NULL THEN 0 ELSE 1 END + CASE WHEN n4.next_date IS NULL THEN 0 ELSE 1 END + CASE WHEN n5.next_date IS NULL THEN 0 ELSE 1 END + CASE WHEN n6.next_date IS NULL THEN 0 ELSE 1 END + CASE WHEN n7.next_date IS NULL THEN 0 ELSE 1 END + CASE WHEN n8.next_date IS NULL THEN 0 ELSE 1 END + CASE WHEN n9.next_date IS NULL THEN 0 ELSE 1 END AS n_cycles
  FROM first_cycle AS f
  LEFT JOIN nxt AS n1
    ON n1.person_id = f.person_id AND n1.cycle_date = f.cycle_date
  LEFT JOIN nxt AS n2
    ON n2.person_id = f.person_id AND n2.cycle_date = n1.next_date
  LEFT JOIN nxt AS n3
    ON n3.person_id = f.person_id AND n3.cycle_date = n2.next_date
  LEFT JOIN nxt AS n4
    ON n4.person_id = f.person_id AND n4.cycle_date = n3.next_date
  LEFT JOIN nxt AS n5
    ON n5.person_id = f.person_id AND n5.cycle_date = n4.next_date
  LEFT JOIN nxt AS n6
    ON n6.person_id = f.person_id AND n6.cycle_date = n5.next_date
  LEFT JOIN nxt AS n7
    ON n7.person_id = f.person_id AND n7.cycle_date = n6.next_date
  LEFT JOIN nxt AS n8
    ON n8.person_id = f.person_id AND n8.cycle_date = n7.next_date
  LEFT JOIN nxt AS n9
    ON n9.person_id = f.person_id AND n9.cycle_date = n8.next_date
), partners AS (
  SELECT
    ev.person_id,
    SUM(CASE WHEN ev.codeset_id = 6 THEN 1 ELSE 0 END) AS n_etoposide,
    SUM(CASE WHEN ev.codeset_id = 7 THEN 1 ELSE 0 END) AS n_pd1
  FROM results.l059_events AS ev
  JOIN results.l059_qualified AS q
    ON q.person_id = ev.person_id
  WHERE
    ev.codeset_id IN (6, 7)
    AND ev.start_date >= q.induction_start
    AND ev.start_date < q.index_date
  GROUP BY
    ev.person_id
)
SELECT
  4,
  q.person_id
FROM results.l059_qualified AS q
JOIN spacing AS s
  ON s.person_id = q.person_id
LEFT JOIN chained AS ch
  ON ch.person_id = q.person_id
JOIN partners AS p
  ON p.person_id = q.person_id
WHERE
  CASE WHEN s.n_close = 0 THEN s.n_dates ELSE ch.n_cycles END >= 4
  AND CASE WHEN s.n_close = 0 THEN s.n_dates ELSE ch.n_cycles END <= 6
  AND p.n_etoposide > 0
  AND p.n_pd1 > 0;

-- r06_no_progression_during_induction.sql
INSERT INTO results.l059_inclusion (
  rule_id,
  person_id
)
SELECT
  5,
  q.person_id
FROM results.l059_qualified AS q
LEFT JOIN (
  SELECT DISTINCT
    a.person_id
  FROM results.l059_values AS a
  JOIN results.l059_qualified AS q2
    ON q2.person_id = a.person_id
  JOIN results.l059_codeset AS v
    ON v.concept_id = a.value_as_concept_id AND v.codeset_id = 19
  WHERE
    a.codeset_id = 17
    AND a.start_date >= q2.induction_start
    AND a.start_date <= q2.index_date
) AS pd
  ON pd.person_id = q.person_id
WHERE
  pd.person_id IS NULL;

-- r07_ecog_0_to_2.sql
INSERT INTO results.l059_inclusion (
  rule_id,
  person_id
)
WITH ecog AS (
  SELECT
    m.person_id,
    m.value_as_number,
    ROW_NUMBER() OVER (PARTITION BY m.person_id ORDER BY m.start_date DESC, m.value_as_number DESC) AS rn
  FROM results.l059_values AS m
  JOIN results.l059_qualified AS q2
    ON q2.person_id = m.person_id
  WHERE
    m.codeset_id = 15
    AND NOT m.value_as_number IS NULL
    AND m.start_date >= (
      q2.index_date + (
        -42
      )
    )
    AND m.start_date <= q2.index_date
)
SELECT
  6,
  q.person_id
FROM results.l059_qualified AS q
JOIN ecog
  ON ecog.person_id = q.person_id AND ecog.rn = 1
WHERE
  ecog.value_as_number >= 0 AND ecog.value_as_number <= 2;

-- r08_pd1_with_anlotinib.sql
INSERT INTO results.l059_inclusion (
  rule_id,
  person_id
)
SELECT
  7,
  q.person_id
FROM results.l059_qualified AS q
JOIN (
  SELECT DISTINCT
    d.person_id
  FROM results.l059_events AS d
  JOIN results.l059_qualified AS q2
    ON q2.person_id = d.person_id
  WHERE
    d.codeset_id = 7
    AND d.start_date >= (
      q2.index_date + (
        -7
      )
    )
    AND d.start_date <= (
      q2.index_date + (
        28
      )
    )
) AS ok
  ON ok.person_id = q.person_id;

-- r09_anlotinib_six_weeks.sql
INSERT INTO results.l059_inclusion (
  rule_id,
  person_id
)
WITH ex AS (
  SELECT
    d.person_id,
    d.start_date,
    d.end_date,
    MAX(d.end_date) OVER (
      PARTITION BY d.person_id
      ORDER BY d.start_date NULLS FIRST, d.end_date NULLS FIRST
      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
    ) AS prev_end
  FROM results.l059_events AS d
  JOIN results.l059_qualified AS q
    ON q.person_id = d.person_id
  WHERE
    d.codeset_id = 1 AND d.start_date <= (
      q.index_date + (
        42 + 30
      )
    )
), breaks AS (
  SELECT
    person_id,
    start_date,
    end_date
  FROM ex
  WHERE
    NOT prev_end IS NULL AND start_date > (
      prev_end + (
        30
      )
    )
), first_break AS (
  SELECT
    b.person_id,
    b.start_date,
    MIN(b.end_date) AS end_date
  FROM breaks AS b
  JOIN (
    SELECT
      person_id,
      MIN(start_date) AS start_date
    FROM breaks
    GROUP BY
      person_id
  ) AS f
    ON f.person_id = b.person_id AND f.start_date = b.start_date
  GROUP BY
    b.person_id,
    b.start_date
), first_era AS (
  SELECT
    ex.person_id,
    MAX(ex.end_date) AS era_end
  FROM ex
  LEFT JOIN first_break AS fb
    ON fb.person_id = ex.person_id
  WHERE
    ex.prev_end IS NULL
    OR fb.person_id IS NULL
    OR ex.start_date < fb.start_date
    OR (
      ex.start_date = fb.start_date AND ex.end_date < fb.end_date
    )
  GROUP BY
    ex.person_id
)
SELECT
  8,
  q.person_id
FROM results.l059_qualified AS q
JOIN first_era AS f
  ON f.person_id = q.person_id
WHERE
  (
    f.era_end + (
      1
    )
  ) >= (
    q.index_date + (
      42
    )
  );

-- r10_evaluable_assessment_after_index.sql
INSERT INTO results.l059_inclusion (
  rule_id,
  person_id
)
SELECT
  9,
  q.person_id
FROM results.l059_qualified AS q
JOIN (
  SELECT DISTINCT
    a.person_id
  FROM results.l059_values AS a
  JOIN results.l059_qualified AS q2
    ON q2.person_id = a.person_id
  JOIN results.l059_codeset AS v
    ON v.concept_id = a.value_as_concept_id AND v.codeset_id = 18
  WHERE
    a.codeset_id = 17 AND a.start_date > q2.index_date
) AS ok
  ON ok.person_id = q.person_id;

-- r11_no_prior_io_or_antiangiogenic.sql
INSERT INTO results.l059_inclusion (
  rule_id,
  person_id
)
SELECT
  10,
  q.person_id
FROM results.l059_qualified AS q
LEFT JOIN (
  SELECT DISTINCT
    d.person_id
  FROM results.l059_events AS d
  JOIN results.l059_qualified AS q2
    ON q2.person_id = d.person_id
  WHERE
    d.codeset_id IN (1, 7, 9) AND d.start_date < q2.es_date
) AS prior_use
  ON prior_use.person_id = q.person_id
WHERE
  prior_use.person_id IS NULL;

-- r12_no_treated_autoimmune_disease.sql
INSERT INTO results.l059_inclusion (
  rule_id,
  person_id
)
SELECT
  11,
  q.person_id
FROM results.l059_qualified AS q
LEFT JOIN (
  SELECT
    c.person_id
  FROM results.l059_events AS c
  JOIN results.l059_qualified AS q2
    ON q2.person_id = c.person_id
  WHERE
    c.codeset_id IN (10, 11)
    AND c.start_date >= (
      q2.index_date + (
        -730
      )
    )
    AND c.start_date <= q2.index_date
  GROUP BY
    c.person_id
  HAVING
    COUNT(DISTINCT c.codeset_id) = 2
) AS treated
  ON treated.person_id = q.person_id
WHERE
  treated.person_id IS NULL;

-- r13_no_coagulation_dysfunction.sql
INSERT INTO results.l059_inclusion (
  rule_id,
  person_id
)
SELECT
  12,
  q.person_id
FROM results.l059_qualified AS q
LEFT JOIN (
  SELECT
    x.person_id
  FROM results.l059_values AS x
  JOIN results.l059_qualified AS q2
    ON q2.person_id = x.person_id
  WHERE
    (
      (
        x.codeset_id = 13 AND x.value_as_number > 1.5
      )
      OR (
        x.codeset_id = 14 AND x.value_as_number > 1.5 * COALESCE(x.range_high, 40)
      )
    )
    AND x.start_date >= (
      q2.index_date + (
        -30
      )
    )
    AND x.start_date <= q2.index_date
  UNION
  SELECT
    c.person_id
  FROM results.l059_events AS c
  JOIN results.l059_qualified AS q2
    ON q2.person_id = c.person_id
  WHERE
    c.codeset_id = 12
    AND c.start_date >= (
      q2.index_date + (
        -180
      )
    )
    AND c.start_date <= q2.index_date
) AS coagulopathy
  ON coagulopathy.person_id = q.person_id
WHERE
  coagulopathy.person_id IS NULL;

-- 80_inclusion_masks.sql
INSERT INTO results.l059_mask (
  person_id,
  inclusion_rule_mask
)
SELECT
  q.person_id,
  CAST(COALESCE(i.rule_mask, 0) AS BIGINT)
FROM results.l059_qualified AS q
LEFT JOIN (
  SELECT
    person_id,
    SUM(POWER(CAST(2 AS BIGINT), rule_id)) AS rule_mask
  FROM results.l059_inclusion
  GROUP BY
    person_id
) AS i
  ON i.person_id = q.person_id;

-- 85_inclusion_names (generated from the rule headers)
DELETE FROM results.cohort_inclusion
WHERE
  cohort_definition_id = 1059;
INSERT INTO results.cohort_inclusion (
  cohort_definition_id,
  rule_sequence,
  name,
  description
)
SELECT
  1059 AS cohort_definition_id,
  0 AS rule_sequence,
  'R1 Age >= 18 at index' AS name,
  'age >= 18 on the index date, from the full birth date where month and day are known, else from the birth year.' AS description
UNION ALL
SELECT
  1059 AS cohort_definition_id,
  1 AS rule_sequence,
  'R2 ES-SCLC by index' AS name,
  'an SCLC diagnosis and an extensive-stage record on or after it (the ES date), both on or before the index date.' AS description
UNION ALL
SELECT
  1059 AS cohort_definition_id,
  2 AS rule_sequence,
  'R3 Treatment-free interval after limited-stage disease' AS name,
  'no limited-stage record before the ES date, or the last anticancer treatment (chemotherapy, PD-(L)1 agent or radiotherapy) that ended before the ES date ended >= 183 days before it.' AS description
UNION ALL
SELECT
  1059 AS cohort_definition_id,
  3 AS rule_sequence,
  'R4 Measurable target lesion' AS name,
  'a target-lesion measurement >= 10 mm between ES date - 42 days and the index date.' AS description
UNION ALL
SELECT
  1059 AS cohort_definition_id,
  4 AS rule_sequence,
  'R5 4-6 cycles of induction chemoimmunotherapy' AS name,
  'between induction start and the day before index: 4-6 platinum cycles (administration dates; a date counts as a new cycle when >= 14 days after the previous counted one), at least one etoposide and at least one PD-(L)1 administration.' AS description
UNION ALL
SELECT
  1059 AS cohort_definition_id,
  5 AS rule_sequence,
  'R6 No progression during induction' AS name,
  'no PD tumour assessment from induction start to the index date.' AS description
UNION ALL
SELECT
  1059 AS cohort_definition_id,
  6 AS rule_sequence,
  'R7 ECOG 0-2' AS name,
  'the latest ECOG value in [index - 42 days, index] is <= 2 (several on that day: the worst); no ECOG recorded: the rule fails.' AS description
UNION ALL
SELECT
  1059 AS cohort_definition_id,
  7 AS rule_sequence,
  'R8 PD-(L)1 agent with anlotinib' AS name,
  'a PD-(L)1 administration in [index - 7 days, index + 28 days].' AS description
UNION ALL
SELECT
  1059 AS cohort_definition_id,
  8 AS rule_sequence,
  'R9 Anlotinib >= 6 weeks' AS name,
  'the anlotinib era that starts at index (exposures merged while the next starts <= 30 days after the latest end so far, as OHDSI drug eras) covers >= 42 days counting its first and last day.' AS description
UNION ALL
SELECT
  1059 AS cohort_definition_id,
  9 AS rule_sequence,
  'R10 Evaluable tumour assessment after index' AS name,
  'at least one tumour assessment with response CR, PR, SD or PD after the index date.' AS description
UNION ALL
SELECT
  1059 AS cohort_definition_id,
  10 AS rule_sequence,
  'R11 No PD-(L)1 or anti-angiogenic agent before ES' AS name,
  'no PD-(L)1 agent, anlotinib, apatinib or bevacizumab before the ES date.' AS description
UNION ALL
SELECT
  1059 AS cohort_definition_id,
  11 AS rule_sequence,
  'R12 No autoimmune disease with immunosuppressive therapy' AS name,
  'not both an autoimmune condition and immunosuppressive therapy starting in [index - 730 days, index].' AS description
UNION ALL
SELECT
  1059 AS cohort_definition_id,
  12 AS rule_sequence,
  'R13 No coagulation dysfunction or bleeding tendency' AS name,
  'no INR > 1.5 and no APTT > 1.5 x ULN (range_high; 40 s where absent) in [index - 30 days, index]; no coagulation-disorder or bleeding condition in [index - 180 days, index].' AS description;

-- 90_cohort_rows.sql
DELETE FROM results.cohort
WHERE
  cohort_definition_id = 1059;
INSERT INTO results.cohort (
  cohort_definition_id,
  subject_id,
  cohort_start_date,
  cohort_end_date
)
SELECT
  1059,
  q.person_id,
  q.index_date,
  q.cohort_end_date
FROM results.l059_qualified AS q
JOIN results.l059_mask AS m
  ON m.person_id = q.person_id
WHERE
  m.inclusion_rule_mask = 8191;

-- 91_inclusion_stats.sql
DELETE FROM results.cohort_inclusion_result
WHERE
  cohort_definition_id = 1059;
INSERT INTO results.cohort_inclusion_result (
  cohort_definition_id,
  inclusion_rule_mask,
  person_count,
  mode_id
)
SELECT
  1059,
  m.inclusion_rule_mask,
  COUNT(*),
  modes.mode_id
FROM results.l059_mask AS m
CROSS JOIN (
  SELECT
    0 AS mode_id
  UNION ALL
  SELECT
    1 AS mode_id
) AS modes
GROUP BY
  m.inclusion_rule_mask,
  modes.mode_id;
DELETE FROM results.cohort_inclusion_stats
WHERE
  cohort_definition_id = 1059;
INSERT INTO results.cohort_inclusion_stats (
  cohort_definition_id,
  rule_sequence,
  person_count,
  gain_count,
  person_total,
  mode_id
)
SELECT
  1059,
  r.rule_sequence,
  COALESCE(met.person_count, 0),
  COALESCE(gain.gain_count, 0),
  total.person_total,
  modes.mode_id
FROM results.cohort_inclusion AS r
CROSS JOIN (
  SELECT
    COUNT(*) AS person_total
  FROM results.l059_qualified
) AS total
CROSS JOIN (
  SELECT
    0 AS mode_id
  UNION ALL
  SELECT
    1 AS mode_id
) AS modes
LEFT JOIN (
  SELECT
    r2.rule_sequence,
    SUM(m.mask_count) AS person_count
  FROM (
    SELECT
      inclusion_rule_mask,
      COUNT(*) AS mask_count
    FROM results.l059_mask
    GROUP BY
      inclusion_rule_mask
  ) AS m
  JOIN results.cohort_inclusion AS r2
    ON r2.cohort_definition_id = 1059
    AND FLOOR(
      CAST(m.inclusion_rule_mask AS DOUBLE) / POWER(CAST(2 AS DOUBLE), r2.rule_sequence)
    ) > 2 * FLOOR(
      CAST(m.inclusion_rule_mask AS DOUBLE) / POWER(CAST(2 AS DOUBLE), r2.rule_sequence + 1)
    )
  GROUP BY
    r2.rule_sequence
) AS met
  ON met.rule_sequence = r.rule_sequence
LEFT JOIN (
  SELECT
    inclusion_rule_mask,
    COUNT(*) AS gain_count
  FROM results.l059_mask
  GROUP BY
    inclusion_rule_mask
) AS gain
  ON gain.inclusion_rule_mask = 8191 - CAST(POWER(CAST(2 AS BIGINT), r.rule_sequence) AS BIGINT)
WHERE
  r.cohort_definition_id = 1059;
DELETE FROM results.cohort_summary_stats
WHERE
  cohort_definition_id = 1059;
INSERT INTO results.cohort_summary_stats (
  cohort_definition_id,
  base_count,
  final_count,
  mode_id
)
SELECT
  1059,
  base.n,
  final_q.n,
  modes.mode_id
FROM (
  SELECT
    COUNT(*) AS n
  FROM results.l059_qualified
) AS base
CROSS JOIN (
  SELECT
    COUNT(*) AS n
  FROM results.l059_mask
  WHERE
    inclusion_rule_mask = 8191
) AS final_q
CROSS JOIN (
  SELECT
    0 AS mode_id
  UNION ALL
  SELECT
    1 AS mode_id
) AS modes;

-- 99_drop_scratch_tables.sql
DROP TABLE IF EXISTS results.l059_codeset;
DROP TABLE IF EXISTS results.l059_entry;
DROP TABLE IF EXISTS results.l059_events;
DROP TABLE IF EXISTS results.l059_values;
DROP TABLE IF EXISTS results.l059_qualified;
DROP TABLE IF EXISTS results.l059_inclusion;
DROP TABLE IF EXISTS results.l059_cycle;
DROP TABLE IF EXISTS results.l059_mask;
