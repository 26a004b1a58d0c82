"""A :class:`~l059_omop.etl.block.FactBlock`'s facts -> table rows as columns: :func:`~l059_omop.etl.route.route`
for many facts at once. Pure (a lookup dict in, arrays and frames out).

The work per fact is a few C-level list and array operations; the rules (which concept, which table, what
counts as unmapped) are decided once per distinct combination of codes, so they are route()'s, applied to
each combination: ``tests/fhir/test_fhir_columnar.py`` holds the two paths to the same database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from l059_omop.etl.block import FactBlock
from l059_omop.etl.route import DOMAIN_TABLE, TABLE_ID, table_for_domain

TABLES = ("condition_occurrence", "measurement", "observation", "drug_exposure", "procedure_occurrence",
          "device_exposure")
_TABLE_NO = {t: i for i, t in enumerate(TABLES)}
_PREFIX = {"condition_occurrence": "condition", "measurement": "measurement", "observation": "observation",
           "drug_exposure": "drug", "procedure_occurrence": "procedure", "device_exposure": "device"}


@dataclass
class Routed:
    """Per fact: its table (index into TABLES), concepts (``value`` / ``unit`` -1 where the fact has no such
    code: the column stays null) and the unmapped pairs to count (fact position, pair)."""

    table: np.ndarray
    concept: np.ndarray
    source_concept: np.ndarray
    value_concept: np.ndarray
    unit_concept: np.ndarray
    unmapped: list[tuple[int, tuple[str, str]]]

    def take(self, keep: np.ndarray) -> Routed:
        """The facts where ``keep`` (a mask over the facts) holds, unmapped positions renumbered."""
        renumber = np.cumsum(keep) - 1
        return Routed(self.table[keep], self.concept[keep], self.source_concept[keep], self.value_concept[keep],
                      self.unit_concept[keep], [(int(renumber[j]), p) for j, p in self.unmapped if keep[j]])


def combinations(block: FactBlock) -> tuple[dict[tuple, int], np.ndarray]:
    """The distinct (code, alt codes, concept override, fallback domain) of the block's facts, numbered, and
    each fact's number: route()'s decision depends on nothing else (with the lookup)."""
    f = block.fact
    combos: dict[tuple, int] = {}
    ix = np.fromiter((combos.setdefault(k, len(combos)) for k in
                      zip(f["code"], f["alt_codes"], f["concept_override"], f["domain"], strict=True)),
                     dtype=np.int64, count=block.n_facts)
    return combos, ix


def code_pairs(block: FactBlock, combos: dict[tuple, int]) -> set:
    """Every (vocabulary_id, code) pair the block's facts may look up."""
    f = block.fact
    pairs = set(f["value_code"]) | set(f["unit"])
    for code, alts, _, _ in combos:
        pairs.add(code)
        pairs.update(alts)
    pairs.discard(None)
    return pairs


def _cut(value, n: int = 50):
    return None if value is None else str(value)[:n]


def route_facts(block: FactBlock, lookup: Mapping, combos: tuple[dict[tuple, int], np.ndarray] | None = None
                ) -> Routed:
    f = block.fact
    combos, ix = combos or combinations(block)
    per = []
    for code, alts, override, domain in combos:
        match = lookup.get(code) if code else None
        if alts and not (match and match.mapped):
            for alt in alts:
                m = lookup.get(alt)
                if m and m.mapped:
                    match = m
                    break
        if override is not None:
            per.append((_TABLE_NO[DOMAIN_TABLE[domain]], override, match.source_concept_id if match else 0, None))
            continue
        concept = match.standard_concept_id if match else 0
        mdomain = match.domain_id if match and match.mapped else None
        per.append((_TABLE_NO[table_for_domain(mdomain, domain)], concept, match.source_concept_id if match else 0,
                    (code or "text") if concept == 0 else None))
    cols = list(zip(*per, strict=True)) if per else [(), (), (), ()]
    table = np.asarray(cols[0], dtype=np.int64)[ix]
    concept = np.asarray(cols[1], dtype=np.int64)[ix]
    source = np.asarray(cols[2], dtype=np.int64)[ix]
    unmapped: list[tuple[int, tuple[str, str]]] = []
    for c, unm in enumerate(cols[3]):
        if unm is None:
            continue
        for j in np.flatnonzero(ix == c).tolist():
            unmapped.append((j, unm if unm != "text" else ("(text)", _cut(f["source_value"][j], 50) or "")))
    value = _concepts(f["value_code"], lookup)
    for j in np.flatnonzero(value == 0).tolist():
        unmapped.append((j, f["value_code"][j]))
    unmapped.sort(key=lambda x: x[0])
    return Routed(table, concept, source, value, _concepts(f["unit"], lookup), unmapped)


def _concepts(codes: list, lookup: Mapping) -> np.ndarray:
    """Standard concept per code (0 unmapped), -1 where there is no code."""
    known: dict = {None: -1}
    for c in set(codes):
        if c is not None:
            m = lookup.get(c)
            known[c] = m.standard_concept_id if m else 0
    return np.fromiter((known[c] for c in codes), dtype=np.int64, count=len(codes))


class Columns:
    """The block's fact fields as object arrays, each made once per batch (every table takes its rows)."""

    def __init__(self, block: FactBlock) -> None:
        self.fact = block.fact
        self._arrays: dict[str, np.ndarray] = {}

    def take(self, name: str, sel: np.ndarray) -> np.ndarray:
        arr = self._arrays.get(name)
        if arr is None:
            values = self.fact[name]
            arr = self._arrays[name] = np.empty(len(values), dtype=object)
            arr[:] = values
        return arr[sel]


def _ints(arr: np.ndarray) -> pd.arrays.IntegerArray:
    """Int64 with -1 (no code) as null."""
    return pd.arrays.IntegerArray(np.where(arr < 0, 0, arr), arr < 0)


def _nullable(ids: np.ndarray) -> pd.arrays.IntegerArray:
    """Int64 with 0 (no link) as null."""
    return pd.arrays.IntegerArray(ids, ids == 0)


def _floats(values: np.ndarray) -> pd.arrays.FloatingArray:
    v = np.array(values.tolist(), dtype=np.float64) if len(values) else np.zeros(0)
    return pd.array(v, dtype="Float64")


def _when(values: np.ndarray) -> pd.Series:
    return pd.to_datetime(pd.Series(values, dtype="object"))


_STR_OR_NONE = {str, type(None)}


def _texts(values: np.ndarray, n: int) -> pd.Series:
    """route()'s _cut: the text of each value, at most n characters (None stays None)."""
    items = values.tolist()
    if set(map(type, items)) <= _STR_OR_NONE and max(map(len, filter(None, items)), default=0) <= n:
        return pd.Series(values.copy(), dtype="object")  # (the usual case, checked at C speed: nothing to cut)
    return pd.Series([None if v is None else str(v)[:n] for v in items], dtype="object")


def table_frame(cols: Columns, r: Routed, table: str, sel: np.ndarray, own: np.ndarray, person: np.ndarray,
                visit: np.ndarray, event: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """The rows of ``table`` made by the facts at ``sel``: route()'s columns, typed as the sink's frames.
    ``own`` / ``person`` / ``visit`` / ``event``: the ids per selected fact (visit, event: 0 = none)."""
    p = _PREFIX[table]

    start = cols.take("start", sel)
    type_concept = np.asarray(cols.take("type_concept_id", sel).tolist(), dtype=np.int64)
    d: dict[str, object] = {
        TABLE_ID[table]: pd.array(own, dtype="Int64"), "person_id": pd.array(person, dtype="Int64"),
        f"{p}_concept_id": pd.array(r.concept[sel], dtype="Int64"),
        f"{p}_source_value": _texts(cols.take("source_value", sel), 50),
        f"{p}_source_concept_id": pd.array(r.source_concept[sel], dtype="Int64"),
        "visit_occurrence_id": _nullable(visit),
    }
    if table == "measurement" or table == "observation":
        value_concept = r.value_concept[sel]
        number = _floats(cols.take("value_number", sel))
        vsv = cols.take("value_source_value", sel)
        d.update({f"{p}_date": _when(start), f"{p}_datetime": _when(cols.take("start_dt", sel)),
                  f"{p}_type_concept_id": pd.array(type_concept, dtype="Int64"), "value_as_number": number,
                  "value_as_concept_id": _ints(value_concept), "unit_concept_id": _ints(r.unit_concept[sel]),
                  "unit_source_value": _texts(cols.take("unit_source_value", sel), 50),
                  "value_source_value": _texts(vsv, 50), f"{p}_event_id": _nullable(event)})
        if table == "measurement":
            d.update({"range_low": _floats(cols.take("range_low", sel)), "range_high": _floats(cols.take("range_high", sel))})
        else:
            as_string = _texts(vsv, 60)
            as_string[(value_concept >= 0) | ~np.asarray(number.isna())] = None
            d["value_as_string"] = as_string
    elif table == "drug_exposure":
        end = cols.take("end", sel)
        days = cols.take("days_supply", sel)
        computed = end.copy()
        for i in np.flatnonzero([e is None and bool(ds) and s is not None
                                 for e, ds, s in zip(end.tolist(), days.tolist(), start.tolist(), strict=True)]):
            computed[i] = start[i] + dt.timedelta(days=int(days[i]) - 1)
        computed = np.where(pd.isna(computed), start, computed)
        d.update({"drug_exposure_start_date": _when(start), "drug_exposure_start_datetime":
                  _when(cols.take("start_dt", sel)), "drug_exposure_end_date": _when(computed),
                  "drug_exposure_end_datetime": _when(cols.take("end_dt", sel)), "verbatim_end_date": _when(end),
                  "drug_type_concept_id": pd.array(type_concept, dtype="Int64"),
                  "stop_reason": _texts(cols.take("stop_reason", sel), 20), "quantity": _floats(cols.take("quantity", sel)),
                  "days_supply": pd.array(days.tolist(), dtype="Int64"),
                  "route_source_value": _texts(cols.take("route_source_value", sel), 50),
                  "dose_unit_source_value": _texts(cols.take("dose_unit_source_value", sel), 50)})
    else:
        stem = {"procedure_occurrence": "procedure", "device_exposure": "device_exposure"}.get(table, p)
        start_col, dt_col, end_col = ((f"{stem}_date", f"{stem}_datetime", f"{stem}_end_date")
                                      if table == "procedure_occurrence" else
                                      (f"{stem}_start_date", f"{stem}_start_datetime", f"{stem}_end_date"))
        d.update({start_col: _when(start), dt_col: _when(cols.take("start_dt", sel)),
                  end_col: _when(cols.take("end", sel)), f"{end_col}time": _when(cols.take("end_dt", sel)),
                  f"{p}_type_concept_id": pd.array(type_concept, dtype="Int64")})
        if table == "condition_occurrence":
            d["stop_reason"] = _texts(cols.take("stop_reason", sel), 20)
        else:
            d["quantity"] = _floats(cols.take("quantity", sel))
    return pd.DataFrame({c: d[c] for c in columns if c in d})
