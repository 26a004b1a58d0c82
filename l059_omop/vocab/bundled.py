"""The vocabulary that ships with l059-omop, assembled as Athena-shaped frames.

Sources (see data/vocabulary/SOURCES.md): the verified subset, the partly verified rows completed by
PARTIAL_FILLS.csv, the rows added later (CONCEPT_ADDED.csv, adverse events), the derived level-1 ancestry,
and the local L059 concepts. Concept ancestry is closed
transitively and every standard concept gets its self row, as Athena's CONCEPT_ANCESTOR has.
"""

from __future__ import annotations

import pandas as pd

from l059_omop.resources import data_path

LOCAL_VOCABULARY_ID = "L059"
_DATE_COLS = ("valid_start_date", "valid_end_date")


def read_athena(path, table: str) -> pd.DataFrame:
    """Read one Athena file (tab-separated, no quoting, dates YYYYMMDD) with CDM column types."""
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_values=[""], quoting=3)
    df.columns = [c.lower() for c in df.columns]
    for c in _DATE_COLS:
        if c in df:
            df[c] = pd.to_datetime(df[c], format="%Y%m%d").dt.date
    for c in df.columns:
        if c.endswith("_concept_id") or c in ("concept_id", "concept_id_1", "concept_id_2", "box_size") \
                or c.endswith("levels_of_separation"):
            df[c] = pd.to_numeric(df[c]).astype("Int64")
        elif c.endswith("_value"):
            df[c] = pd.to_numeric(df[c]).astype("float64")
    return df


def _apply_fills(concepts: pd.DataFrame) -> pd.DataFrame:
    fills = pd.read_csv(data_path("vocabulary", "PARTIAL_FILLS.csv"), dtype=str)
    concepts = concepts.copy()
    for r in fills.itertuples():
        mask = concepts["concept_id"] == int(r.concept_id)
        concepts.loc[mask, r.field] = r.value
    return concepts


def local_concepts() -> dict[str, pd.DataFrame]:
    """The L059 concepts with their relationships, ancestry and drug strength."""
    d = data_path("vocabulary", "local")
    return {
        "concept": read_athena(d / "CONCEPT.csv", "concept"),
        "concept_relationship": read_athena(d / "CONCEPT_RELATIONSHIP.csv", "concept_relationship"),
        "concept_ancestor": read_athena(d / "CONCEPT_ANCESTOR.csv", "concept_ancestor"),
        "drug_strength": read_athena(d / "DRUG_STRENGTH.csv", "drug_strength"),
    }


def close_ancestry(ancestor: pd.DataFrame, standard_ids) -> pd.DataFrame:
    """Transitive closure of ancestor rows plus a (c, c, 0, 0) row for each standard concept."""
    edges: dict[tuple[int, int], tuple[int, int]] = {}
    for a, b, lo, hi in ancestor[["ancestor_concept_id", "descendant_concept_id", "min_levels_of_separation",
                                  "max_levels_of_separation"]].itertuples(index=False):
        edges[(int(a), int(b))] = (int(lo), int(hi))
    changed = True
    while changed:
        changed = False
        for (a, b), (lo1, hi1) in list(edges.items()):
            if a == b:
                continue
            for (c, d), (lo2, hi2) in list(edges.items()):
                if c == b and c != d and (a, d) not in edges and a != d:
                    edges[(a, d)] = (lo1 + lo2, hi1 + hi2)
                    changed = True
    for c in standard_ids:
        edges.setdefault((int(c), int(c)), (0, 0))
    rows = [(a, b, lo, hi) for (a, b), (lo, hi) in sorted(edges.items())]
    out = pd.DataFrame(rows, columns=["ancestor_concept_id", "descendant_concept_id", "min_levels_of_separation",
                                      "max_levels_of_separation"])
    return out.astype("Int64")


def _metadata_tables(concept: pd.DataFrame, relationship_ids, version: str) -> dict[str, pd.DataFrame]:
    vocabs = sorted(set(concept["vocabulary_id"]))
    vocabulary = pd.DataFrame({
        "vocabulary_id": vocabs,
        "vocabulary_name": [("l059-omop local concepts" if v == LOCAL_VOCABULARY_ID else v) for v in vocabs],
        "vocabulary_reference": ["l059-omop bundled subset (data/vocabulary/SOURCES.md)"] * len(vocabs),
        "vocabulary_version": [version] * len(vocabs),
        "vocabulary_concept_id": [0] * len(vocabs),
    })
    domains = sorted(set(concept["domain_id"]))
    domain = pd.DataFrame({"domain_id": domains, "domain_name": domains, "domain_concept_id": [0] * len(domains)})
    classes = sorted(set(concept["concept_class_id"]))
    concept_class = pd.DataFrame({"concept_class_id": classes, "concept_class_name": classes,
                                  "concept_class_concept_id": [0] * len(classes)})
    reverse = {"Maps to": "Mapped from", "Is a": "Subsumes", "Contained in panel": "Panel contains"}
    reverse.update({v: k for k, v in list(reverse.items())})
    rel_ids = sorted(set(relationship_ids) | {reverse.get(r, r) for r in relationship_ids})
    relationship = pd.DataFrame({
        "relationship_id": rel_ids,
        "relationship_name": rel_ids,
        "is_hierarchical": ["1" if r in ("Is a", "Subsumes") else "0" for r in rel_ids],
        "defines_ancestry": ["1" if r in ("Is a", "Subsumes") else "0" for r in rel_ids],
        "reverse_relationship_id": [reverse.get(r, r) for r in rel_ids],
        "relationship_concept_id": [0] * len(rel_ids),
    })
    return {"vocabulary": vocabulary, "domain": domain, "concept_class": concept_class,
            "relationship": relationship}


def _add_self_maps(concept: pd.DataFrame, rel: pd.DataFrame) -> pd.DataFrame:
    """Add the 'Maps to' / 'Mapped from' row of each valid standard concept to itself where missing.

    Athena has these rows for every standard concept, and lookups follow 'Maps to'; the subset only holds
    relationship rows seen in public files, so without this a standard code such as ICDO3 8041/3-C34.1
    would look unmapped.
    """
    std = concept[(concept["standard_concept"] == "S") & concept["invalid_reason"].isna()]
    have = set(rel.loc[(rel["relationship_id"] == "Maps to") & (rel["concept_id_1"] == rel["concept_id_2"]),
                       "concept_id_1"].astype(int))
    std = std[~std["concept_id"].astype(int).isin(have)]
    if std.empty:
        return rel
    rows = []
    for relationship_id in ("Maps to", "Mapped from"):
        rows.append(pd.DataFrame({"concept_id_1": std["concept_id"], "concept_id_2": std["concept_id"],
                                  "relationship_id": relationship_id,
                                  "valid_start_date": std["valid_start_date"],
                                  "valid_end_date": std["valid_end_date"], "invalid_reason": pd.NA}))
    extra = pd.concat(rows, ignore_index=True)
    return pd.concat([rel, extra], ignore_index=True).drop_duplicates(
        ["concept_id_1", "concept_id_2", "relationship_id"])


def bundled_vocabulary(version: str) -> dict[str, pd.DataFrame]:
    """Every vocabulary table's rows for the bundled subset plus the local concepts."""
    d = data_path("vocabulary")
    local = local_concepts()
    concept = pd.concat([read_athena(d / "CONCEPT.csv", "concept"),
                         _apply_fills(read_athena(d / "CONCEPT_PARTIAL.csv", "concept")),
                         read_athena(d / "CONCEPT_ADDED.csv", "concept"),
                         local["concept"]], ignore_index=True)
    concept = concept[concept["vocabulary_id"] != "vocabulary_id"].drop_duplicates("concept_id")
    rel = pd.concat([read_athena(d / "CONCEPT_RELATIONSHIP.csv", "concept_relationship"),
                     read_athena(d / "CONCEPT_RELATIONSHIP_PARTIAL.csv", "concept_relationship"),
                     read_athena(d / "CONCEPT_RELATIONSHIP_ADDED.csv", "concept_relationship"),
                     local["concept_relationship"]], ignore_index=True).drop_duplicates(
        ["concept_id_1", "concept_id_2", "relationship_id"])
    known = set(concept["concept_id"])
    rel = rel[rel["concept_id_1"].isin(known) & rel["concept_id_2"].isin(known)]
    rel = _add_self_maps(concept, rel)
    anc = pd.concat([read_athena(d / "CONCEPT_ANCESTOR.csv", "concept_ancestor"),
                     read_athena(d / "CONCEPT_ANCESTOR_DERIVED.csv", "concept_ancestor"),
                     local["concept_ancestor"]], ignore_index=True)
    anc = anc[anc["ancestor_concept_id"].isin(known) & anc["descendant_concept_id"].isin(known)]
    standard = concept.loc[concept["standard_concept"].isin(["S", "C"]), "concept_id"]
    out = {"concept": concept.reset_index(drop=True),
           "concept_relationship": rel.reset_index(drop=True),
           "concept_ancestor": close_ancestry(anc, standard),
           "drug_strength": local["drug_strength"]}
    out.update(_metadata_tables(concept, set(rel["relationship_id"]), version))
    return out
