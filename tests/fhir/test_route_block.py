"""route_block.route_facts (per distinct code combination, as arrays) decides what route.route decides per
fact: the table, the concepts and the unmapped codes; and table_frame makes route()'s rows. Pure: no database."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import numpy as np
import pandas as pd

from l059_omop.etl import route_block as rb
from l059_omop.etl.block import split_units
from l059_omop.etl.model import Fact, SourceUnit
from l059_omop.etl.route import route
from l059_omop.vocab.lookup import ConceptMatch

D = dt.date(2023, 5, 1)
LOOKUP = {
    ("SNOMED", "c"): ConceptMatch("SNOMED", "c", 11, 111, "Condition"),
    ("LOINC", "m"): ConceptMatch("LOINC", "m", 22, 222, "Measurement"),
    ("LOINC", "obs"): ConceptMatch("LOINC", "obs", 23, 233, "Observation"),
    ("LOINC", "spec"): ConceptMatch("LOINC", "spec", 24, 244, "Spec Anatomic Site"),  # no table: observation
    ("RxNorm", "d"): ConceptMatch("RxNorm", "d", 33, 333, "Drug"),
    ("SNOMED", "unmapped"): ConceptMatch("SNOMED", "unmapped", 44, 0, "Condition"),
    ("SNOMED", "val"): ConceptMatch("SNOMED", "val", 55, 555, "Meas Value"),
    ("UCUM", "mg"): ConceptMatch("UCUM", "mg", 66, 8576, "Unit"),
}


def _facts() -> list[Fact]:
    return [
        Fact("", "p", ("SNOMED", "c"), "c text", "Condition", D, end=D),
        Fact("", "p", ("LOINC", "m"), "lab", "Observation", D, value_number=1.5, unit=("UCUM", "mg"),
             unit_source_value="mg", range_low=1.0, range_high=2.0),
        Fact("", "p", ("LOINC", "obs"), "o", "Measurement", D, value_code=("SNOMED", "val"), value_source_value="v"),
        Fact("", "p", ("LOINC", "spec"), "s", "Measurement", D, value_source_value="free text " * 10),
        Fact("", "p", ("SNOMED", "unmapped"), "u", "Condition", D, alt_codes=(("SNOMED", "c"),)),  # alt maps
        Fact("", "p", ("SNOMED", "unmapped"), "u2", "Condition", D),  # unmapped: counted
        Fact("", "p", None, "only text " * 8, "Observation", D),  # text only: counted as (text)
        Fact("", "p", ("?x", "nope"), "n", "Procedure", D, quantity=2),  # unknown code: fallback domain
        Fact("g", "p", ("L059", "G"), "G", "Measurement", D, value_number=3.0, concept_override=2000000045),
        Fact("", "p", ("RxNorm", "d"), "drug", "Drug", D, days_supply=28, quantity=56.0),
        Fact("", "p", ("RxNorm", "d"), "drug", "Drug", D, end=D + dt.timedelta(days=3)),
        Fact("", "p", ("LOINC", "m"), "lab", "Measurement", D, value_code=("SNOMED", "nothing")),  # value unmapped
    ]


def test_route_facts_decides_what_route_decides():
    units = [SourceUnit("Observation", f"r{i}", f"f:{i}", "h", facts=[f], dates_checked=True)
             for i, f in enumerate(_facts())]
    block, rest = split_units(units, None)
    assert not rest and block.n_facts == len(units)
    got = rb.route_facts(block, LOOKUP)
    expected_unmapped: list = []
    for j, u in enumerate(units):
        table, row = route(u.facts[0], u.resource_type, u.source_id, LOOKUP, expected_unmapped)
        assert rb.TABLES[got.table[j]] == table, (j, table)
        p = rb._PREFIX[table]
        assert got.concept[j] == row[f"{p}_concept_id"] and got.source_concept[j] == row[f"{p}_source_concept_id"]
        if "value_as_concept_id" in row:
            assert (None if got.value_concept[j] < 0 else got.value_concept[j]) == row["value_as_concept_id"]
        if "unit_concept_id" in row:
            assert (None if got.unit_concept[j] < 0 else got.unit_concept[j]) == row["unit_concept_id"]
    assert Counter(pair for _, pair in got.unmapped) == Counter(expected_unmapped)
    assert Counter(expected_unmapped) == Counter({("SNOMED", "unmapped"): 1, ("(text)", ("only text " * 8)[:50]): 1,
                                                  ("?x", "nope"): 1, ("SNOMED", "nothing"): 1})


def test_table_frame_makes_routes_rows():
    units = [SourceUnit("Observation", f"r{i}", f"f:{i}", "h", facts=[f], dates_checked=True)
             for i, f in enumerate(_facts())]
    block, _ = split_units(units, None)
    r = rb.route_facts(block, LOOKUP)
    cols = rb.Columns(block)
    n = block.n_facts
    own = np.arange(1, n + 1, dtype=np.int64)
    for t_no, table in enumerate(rb.TABLES):
        sel = np.flatnonzero(r.table == t_no)
        if not len(sel):
            continue
        columns = [c for c in _spec_columns(table)]
        df = rb.table_frame(cols, r, table, sel, own[sel], np.full(len(sel), 7), np.zeros(len(sel), dtype=np.int64),
                            np.zeros(len(sel), dtype=np.int64), columns)
        for i, j in enumerate(sel.tolist()):
            _, row = route(units[j].facts[0], "Observation", f"r{j}", LOOKUP, [])
            for c, v in row.items():
                if c.endswith("_id") and not c.endswith("concept_id"):
                    continue  # ids and links: the sink's (own, person 7, no visit, no event here)
                cell = df[c].iloc[i]
                if v is None:
                    assert pd.isna(cell), (table, c, cell)
                elif isinstance(v, dt.date):
                    assert pd.Timestamp(cell) == pd.Timestamp(v), (table, c)
                else:
                    assert cell == v, (table, c, cell, v)
        assert list(df.columns) == [c for c in columns if c in df.columns]


def _spec_columns(table: str) -> list[str]:
    from l059_omop.db import cdm_spec

    return [f.name for f in cdm_spec.tables()[table]]
