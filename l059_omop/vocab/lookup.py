"""Code -> concept lookup against whatever vocabulary the database holds.

A code is only ever looked up together with its vocabulary_id (the same code means different things in
SNOMED and LOINC), so the API takes the pair and nothing else. Misses are counted, never silent.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from l059_omop.db.engine import validate_identifier
from l059_omop.resources import mappings_path


@dataclass(frozen=True)
class ConceptMatch:
    """The source concept of a code and the standard concept(s) it maps to (0 when unmapped)."""

    vocabulary_id: str
    concept_code: str
    source_concept_id: int
    standard_concept_id: int
    domain_id: str | None
    standard_concept_ids: tuple[int, ...] = ()

    @property
    def mapped(self) -> bool:
        return self.standard_concept_id != 0


@lru_cache(maxsize=1)
def _system_table() -> dict[str, str]:
    with mappings_path("code_systems.csv").open(encoding="utf-8", newline="") as fh:
        return {r["system_uri"].rstrip("/"): r["vocabulary_id"] for r in csv.DictReader(fh)}


def vocabulary_for_system(system_uri: str | None) -> str | None:
    """FHIR Coding.system -> OMOP vocabulary_id (mappings/code_systems.csv), None when unknown."""
    if not system_uri:
        return None
    return _system_table().get(system_uri.rstrip("/"))


def _tables(schema: str):
    concept = sa.table("concept", sa.column("concept_id"), sa.column("concept_code"), sa.column("vocabulary_id"),
                       sa.column("domain_id"), sa.column("standard_concept"), sa.column("invalid_reason"),
                       sa.column("concept_name"), sa.column("concept_class_id"), schema=schema)
    rel = sa.table("concept_relationship", sa.column("concept_id_1"), sa.column("concept_id_2"),
                   sa.column("relationship_id"), sa.column("invalid_reason"), schema=schema)
    return concept, rel


class Vocabulary:
    """Cached lookups of (vocabulary_id, concept_code) pairs; ``misses`` counts unmapped pairs."""

    def __init__(self, engine: Engine, cdm_schema: str = "cdm") -> None:
        self.engine = engine
        self.schema = validate_identifier(cdm_schema)
        self._cache: dict[tuple[str, str], ConceptMatch] = {}
        self.misses: Counter[tuple[str, str]] = Counter()

    def lookup(self, vocabulary_id: str, concept_code: str) -> ConceptMatch:
        key = (vocabulary_id, concept_code)
        if key not in self._cache:
            self.resolve_many([key])
        match = self._cache[key]
        if not match.mapped:
            self.misses[key] += 1
        return match

    def resolve_many(self, pairs) -> dict[tuple[str, str], ConceptMatch]:
        """Resolve many pairs in few queries (a batch of a loader); results are cached."""
        todo = sorted({(v, c) for v, c in pairs if (v, c) not in self._cache})
        concept, rel = _tables(self.schema)
        target = concept.alias("target")
        for i in range(0, len(todo), 500):
            chunk = todo[i:i + 500]
            by_vocab: dict[str, list[str]] = {}
            for v, c in chunk:
                by_vocab.setdefault(v, []).append(c)
            cond = sa.or_(*[sa.and_(concept.c.vocabulary_id == v, concept.c.concept_code.in_(cs))
                            for v, cs in by_vocab.items()])
            q = (sa.select(concept.c.vocabulary_id, concept.c.concept_code, concept.c.concept_id,
                           target.c.concept_id, target.c.domain_id, concept.c.domain_id)
                 .select_from(concept.outerjoin(
                     rel, sa.and_(rel.c.concept_id_1 == concept.c.concept_id, rel.c.relationship_id == "Maps to",
                                  rel.c.invalid_reason.is_(None)))
                     .outerjoin(target, sa.and_(target.c.concept_id == rel.c.concept_id_2,
                                                target.c.standard_concept == "S",
                                                target.c.invalid_reason.is_(None))))
                 .where(cond)
                 .order_by(concept.c.vocabulary_id, concept.c.concept_code, concept.c.concept_id,
                           target.c.concept_id))
            found: dict[tuple[str, str], list] = {}
            with self.engine.connect() as con:
                for v, c, sid, tid, tdom, sdom in con.execute(q):
                    found.setdefault((v, c), []).append((sid, tid, tdom, sdom))
            for key in chunk:
                rows = found.get(key)
                if not rows:
                    self._cache[key] = ConceptMatch(key[0], key[1], 0, 0, None)
                    continue
                sid = rows[0][0]
                targets = [(tid, tdom) for s, tid, tdom, _ in rows if s == sid and tid is not None]
                if targets:
                    self._cache[key] = ConceptMatch(key[0], key[1], int(sid), int(targets[0][0]), targets[0][1],
                                                    tuple(int(t) for t, _ in targets))
                else:
                    self._cache[key] = ConceptMatch(key[0], key[1], int(sid), 0, rows[0][3])
        return {k: self._cache[k] for k in pairs}

    def unmapped_report(self, top: int = 20) -> list[tuple[str, str, int]]:
        return [(v, c, n) for (v, c), n in self.misses.most_common(top)]
