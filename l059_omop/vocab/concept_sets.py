"""Concept sets from declarative selectors (mappings/concept_sets/*.yaml), resolved against the loaded
vocabulary, so a site with a full Athena download gets its own standard concepts without editing SQL.

A set file::

    name: anlotinib
    description: any anlotinib product
    items:
      - {vocabulary_id: L059, concept_code: ANLOTINIB, descendants: true}
      - {ingredient_name: anlotinib}                # a full vocabulary's own anlotinib, by name
      - {vocabulary_id: RxNorm, concept_code: "123", descendants: true, exclude: true}

Selectors name codes with their vocabulary; an ``ingredient_name`` matches standard Drug ingredients by name
(case-insensitive) with their descendants.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
import yaml
from sqlalchemy.engine import Connection

from l059_omop.errors import BadInput
from l059_omop.resources import mappings_path

_ITEM_KEYS = {"vocabulary_id", "concept_code", "descendants", "exclude", "ingredient_name", "note"}


@dataclass(frozen=True)
class Selector:
    vocabulary_id: str | None = None
    concept_code: str | None = None
    ingredient_name: str | None = None
    descendants: bool = True
    exclude: bool = False


@dataclass(frozen=True)
class ConceptSet:
    id: int
    name: str
    description: str
    items: tuple[Selector, ...] = field(default_factory=tuple)


def parse_concept_set(path: Path, set_id: int) -> ConceptSet:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "items" not in data or "name" not in data:
        raise BadInput("a concept set needs 'name' and 'items'", file=str(path))
    items = []
    for i, it in enumerate(data["items"], start=1):
        unknown = set(it) - _ITEM_KEYS
        if unknown:
            raise BadInput(f"unknown key(s) {sorted(unknown)}", file=str(path), record=f"item {i}")
        if it.get("ingredient_name"):
            items.append(Selector(ingredient_name=str(it["ingredient_name"]), descendants=True,
                                  exclude=bool(it.get("exclude", False))))
        elif it.get("vocabulary_id") and it.get("concept_code") is not None:
            items.append(Selector(vocabulary_id=str(it["vocabulary_id"]), concept_code=str(it["concept_code"]),
                                  descendants=bool(it.get("descendants", True)),
                                  exclude=bool(it.get("exclude", False))))
        else:
            raise BadInput("an item needs vocabulary_id + concept_code, or ingredient_name", file=str(path),
                           record=f"item {i}")
    return ConceptSet(set_id, str(data["name"]), str(data.get("description", "")), tuple(items))


def load_concept_sets(folder: Path | None = None) -> list[ConceptSet]:
    """All sets of a folder, numbered in file-name order (stable: the ids appear in SQL and Circe JSON)."""
    folder = folder or mappings_path("concept_sets")
    files = sorted(folder.glob("*.yaml"))
    return [parse_concept_set(p, i) for i, p in enumerate(files, start=1)]


def _vocab_tables(schema: str):
    concept = sa.table("concept", sa.column("concept_id"), sa.column("concept_code"), sa.column("vocabulary_id"),
                       sa.column("concept_name"), sa.column("concept_class_id"), sa.column("domain_id"),
                       sa.column("standard_concept"), sa.column("invalid_reason"), schema=schema)
    ancestor = sa.table("concept_ancestor", sa.column("ancestor_concept_id"), sa.column("descendant_concept_id"),
                        schema=schema)
    return concept, ancestor


def _selector_ids(con: Connection, schema: str, sel: Selector) -> set[int]:
    concept, ancestor = _vocab_tables(schema)
    if sel.ingredient_name:
        base = sa.select(concept.c.concept_id).where(
            sa.func.lower(concept.c.concept_name) == sel.ingredient_name.lower(),
            concept.c.concept_class_id == "Ingredient", concept.c.domain_id == "Drug")
    else:
        base = sa.select(concept.c.concept_id).where(concept.c.vocabulary_id == sel.vocabulary_id,
                                                     concept.c.concept_code == sel.concept_code)
    ids = {int(r[0]) for r in con.execute(base)}
    if sel.descendants and ids:
        q = sa.select(ancestor.c.descendant_concept_id).where(ancestor.c.ancestor_concept_id.in_(sorted(ids)))
        ids |= {int(r[0]) for r in con.execute(q)}
    return ids


def resolve(con: Connection, cdm_schema: str, cs: ConceptSet) -> set[int]:
    """Concept ids of a set: included selectors minus excluded ones."""
    include: set[int] = set()
    exclude: set[int] = set()
    for sel in cs.items:
        (exclude if sel.exclude else include).update(_selector_ids(con, cdm_schema, sel))
    return include - exclude
