"""The bundled vocabulary: lookups by (vocabulary_id, code), local L059 concepts, ancestry, concept sets."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from l059_omop.vocab import Vocabulary, vocabulary_for_system
from l059_omop.vocab import concept_sets as cs


def test_lookups(shared_engine):
    v = Vocabulary(shared_engine)
    icdo = v.lookup("ICDO3", "8041/3-C34.1")
    assert (icdo.source_concept_id, icdo.standard_concept_id, icdo.domain_id) == (44502427, 44502427, "Condition")
    inr = v.lookup("LOINC", "6301-6")
    assert (inr.source_concept_id, inr.standard_concept_id, inr.domain_id) == (3022217, 3022217, "Measurement")
    capsule = v.lookup("L059", "ANLOTINIB-12MG")
    assert capsule.standard_concept_id == 2000000004 and capsule.domain_id == "Drug"
    assert not v.misses, "mapped codes must not count as misses"


def test_unknown_code_is_zero_and_reported(shared_engine):
    v = Vocabulary(shared_engine)
    miss = v.lookup("LOINC", "99999-9")
    assert (miss.source_concept_id, miss.standard_concept_id, miss.mapped) == (0, 0, False)
    v.lookup("LOINC", "99999-9")
    # the same code in another vocabulary is another pair: a code is never looked up alone
    assert v.lookup("SNOMED", "6301-6").standard_concept_id == 0
    assert v.misses[("LOINC", "99999-9")] == 2
    assert v.unmapped_report()[0] == ("LOINC", "99999-9", 2)


def test_resolve_many_batches(shared_engine):
    v = Vocabulary(shared_engine)
    got = v.resolve_many([("LOINC", "6301-6"), ("ICDO3", "8041/3-C34.1"), ("LOINC", "nope")])
    assert {k: m.standard_concept_id for k, m in got.items()} == {
        ("LOINC", "6301-6"): 3022217, ("ICDO3", "8041/3-C34.1"): 44502427, ("LOINC", "nope"): 0}


def test_anlotinib_capsule_strength_and_ancestor(shared_engine):
    with shared_engine.connect() as con:
        strength = con.execute(sa.text(
            "select ds.ingredient_concept_id, ds.amount_value, u.concept_code from cdm.drug_strength ds "
            "join cdm.concept c on c.concept_id = ds.drug_concept_id "
            "join cdm.concept u on u.concept_id = ds.amount_unit_concept_id "
            "where c.vocabulary_id = 'L059' and c.concept_code = 'ANLOTINIB-12MG'")).all()
        ancestors = {r[0] for r in con.execute(sa.text(
            "select ancestor_concept_id from cdm.concept_ancestor where descendant_concept_id = 2000000004"))}
    assert [(i, float(a), u) for i, a, u in strength] == [(2000000001, 12.0, "mg")]
    assert ancestors == {2000000001, 2000000004}


def test_every_standard_concept_has_self_ancestry(shared_engine):
    with shared_engine.connect() as con:
        missing = con.execute(sa.text(
            "select c.concept_id from cdm.concept c where c.standard_concept in ('S', 'C') and not exists ("
            " select 1 from cdm.concept_ancestor a where a.ancestor_concept_id = c.concept_id"
            " and a.descendant_concept_id = c.concept_id and a.min_levels_of_separation = 0"
            " and a.max_levels_of_separation = 0)")).scalars().all()
        n_std = con.execute(sa.text("select count(*) from cdm.concept where standard_concept = 'S'")).scalar()
        unmapped_std = con.execute(sa.text(
            "select c.concept_id from cdm.concept c where c.standard_concept = 'S' and c.invalid_reason is null "
            "and not exists (select 1 from cdm.concept_relationship r where r.concept_id_1 = c.concept_id "
            "and r.concept_id_2 = c.concept_id and r.relationship_id = 'Maps to')")).scalars().all()
    assert n_std > 100
    assert missing == []
    assert unmapped_std == [], "a standard concept must map to itself, as in Athena"


def test_vocabulary_for_system():
    assert vocabulary_for_system("http://loinc.org") == "LOINC"
    assert vocabulary_for_system("http://snomed.info/sct/") == "SNOMED"
    assert vocabulary_for_system("http://example.org/unknown") is None
    assert vocabulary_for_system(None) is None


def _set(tmp_path, body: str) -> cs.ConceptSet:
    path = tmp_path / "s.yaml"
    path.write_text(body, encoding="utf-8")
    return cs.parse_concept_set(path, 1)


CAPSULES = {2000000002, 2000000003, 2000000004}


SET_CASES = [
    ("name: a\nitems:\n  - {vocabulary_id: L059, concept_code: ANLOTINIB, descendants: true}\n",
     {2000000001} | CAPSULES),
    ("name: a\nitems:\n  - {vocabulary_id: L059, concept_code: ANLOTINIB, descendants: false}\n", {2000000001}),
    ("name: a\nitems:\n  - {ingredient_name: Anlotinib}\n", {2000000001} | CAPSULES),
    ("name: a\nitems:\n  - {ingredient_name: anlotinib}\n"
     "  - {vocabulary_id: L059, concept_code: ANLOTINIB-12MG, exclude: true}\n", {2000000001, 2000000002, 2000000003}),
    ("name: a\nitems:\n  - {vocabulary_id: LOINC, concept_code: 6301-6, descendants: false}\n", {3022217}),
    ("name: a\nitems:\n  - {vocabulary_id: L059, concept_code: NO-SUCH-CODE}\n", set()),
]


def test_concept_set_resolution(shared_engine, tmp_path):
    """With and without descendants, by ingredient name (any case), with an exclusion, unknown code."""
    with shared_engine.connect() as con:
        for body, expected in SET_CASES:
            assert cs.resolve(con, "cdm", _set(tmp_path, body)) == expected, body


@pytest.mark.parametrize("body, words", [
    ("items: []\n", "'name' and 'items'"),
    ("name: a\nitems:\n  - {concept_code: X}\n", "item 1"),
    ("name: a\nitems:\n  - {vocabulary_id: L059, concept_code: X, colour: red}\n", "unknown key"),
])
def test_concept_set_bad_file(tmp_path, body, words):
    from l059_omop.errors import BadInput

    with pytest.raises(BadInput, match=words):
        _set(tmp_path, body)
