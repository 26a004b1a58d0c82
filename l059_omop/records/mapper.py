"""Pure, vectorised mapping of a chunk of extract rows to OMOP rows (no connection, no I/O).

The loader looks up, before calling :func:`map_chunk`, everything that needs the database (vocabulary
concepts of the chunk's codes, unit concepts, drug strengths) and passes it in :class:`Resolved`; ids are
left as source keys (text) for the sink to turn into deterministic integers. A source row that fails any
field (unparseable date, unknown local code, text in a number column, missing required value) is
quarantined whole, naming its file, row and column; its other outputs are not written either.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from l059_omop.db import cdm_spec
from l059_omop.etl.route import PLAUSIBLE_YEARS
from l059_omop.records.codes import normalize
from l059_omop.records.spec import FieldSpec, MappingSpec, OutputSpec, SourceSpec, auto_fields
from l059_omop.records.transforms import parse_dates, parse_dose, parse_numbers, parse_range, strip

PATIENT = "Patient"


@dataclass
class Resolved:
    """Database facts the pure mapper needs, looked up by the loader for the chunk's codes."""

    concepts: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)  # -> (source id, standard id)
    unit_concepts: dict[str, int] = field(default_factory=dict)  # UCUM code -> unit concept id
    strengths: dict[tuple[int, float], int] = field(default_factory=dict)  # (ingredient, mg) -> clinical drug
    pseudonym_key: bytes = b""
    domains: dict[int, str] = field(default_factory=dict)  # standard concept id -> domain_id (routing)


@dataclass
class TableRows:
    """Rows of one output for one chunk. Id fields hold source keys until the sink assigns integers."""

    output: str
    table: str
    resource_type: str
    frame: pd.DataFrame                # OMOP fields (no id fields)
    keys: pd.Series | None             # the row's own source key (None: table without a primary key)
    person_keys: pd.Series | None      # patient pseudonym of each row
    refs: dict[str, tuple[str, str, pd.Series]] = field(default_factory=dict)  # field -> (table, type, keys)
    rownums: pd.Series | None = None   # source row number of each row


@dataclass
class QuarantineRow:
    file: str
    row: int
    column: str | None
    reason: str
    payload: str

    @property
    def locator(self) -> str:
        return f"{self.file}:row {self.row}" + (f":column {self.column}" if self.column else "")


@dataclass
class ChunkResult:
    read: int = 0
    mapped: int = 0
    skipped: Counter = field(default_factory=Counter)
    quarantine: list[QuarantineRow] = field(default_factory=list)
    outputs: list[TableRows] = field(default_factory=list)
    unmapped: Counter = field(default_factory=Counter)  # "vocabulary|code" -> n
    routed: Counter = field(default_factory=Counter)    # (spec table, domain's table) -> rows moved
    keys: pd.Series | None = None  # each row's source key (the spec's key columns, stripped; else a hash)


def keyed(key: bytes) -> bytes:
    """A BLAKE2 key (at most 64 bytes) from the site's pseudonym key."""
    return key if len(key) <= 64 else hashlib.sha256(key).digest()


def pseudonym(hospital_id: str, key: bytes) -> str:
    """The patient's key in etl.source_id_map and person_source_value: a keyed hash (BLAKE2b as a MAC),
    never the hospital id."""
    return hashlib.blake2b(hospital_id.strip().encode("utf-8"), key=keyed(key), digest_size=12).hexdigest()


def _companions(table: str, name: str) -> tuple[str | None, str | None]:
    """(source_value field, source_concept_id field) that go with a *_concept_id field, when the table has them."""
    prefix = name[: -len("_concept_id")]
    if prefix.endswith("_as"):
        prefix = prefix[:-3]
    names = {f.name for f in cdm_spec.tables()[table]}
    sv, sc = f"{prefix}_source_value", f"{prefix}_source_concept_id"
    if name == "unit_concept_id":
        sv, sc = "unit_source_value", "unit_source_concept_id"
    return (sv if sv in names else None), (sc if sc in names and sc != name else None)


def _field_meta(table: str) -> dict[str, cdm_spec.Field]:
    return {f.name: f for f in cdm_spec.tables()[table]}


def codes_needed(source: SourceSpec, chunk: pd.DataFrame) -> tuple[set[tuple[str, str]], set[str]]:
    """(vocabulary_id, code) pairs and unit texts of a chunk, for the loader to resolve before mapping."""
    pairs: set[tuple[str, str]] = set()
    units: set[str] = set()
    for out in source.outputs.values():
        for f in out.fields.values():
            if f.column and f.vocabulary:
                pairs |= {(f.vocabulary, v.strip()) for v in chunk[f.column].unique() if v.strip()}
            if f.units and f.column:
                units |= {v for v in chunk[f.column].unique()}
    return pairs, units


class _Row:
    """Per-chunk working state of one output: the first failure of each row (column, reason)."""

    def __init__(self, n: int) -> None:
        self.reason = np.full(n, None, dtype=object)
        self.column = np.full(n, None, dtype=object)

    def fail(self, mask: pd.Series | np.ndarray, column: str | None, reason: str,
             values: pd.Series | None = None, suffix: str = "") -> None:
        """Record ``reason`` (with ``values``: reason + the cell + suffix, built only for failing rows)."""
        m = np.asarray(mask, dtype=bool) & pd.isna(self.reason)
        if not m.any():
            return
        if values is not None:
            self.reason[m] = [f"{reason}{v}{suffix}" for v in np.asarray(values, dtype=object)[m]]
        else:
            self.reason[m] = reason
        self.column[m] = column


def _text(values: pd.Series, length: int | None) -> pd.Series:
    out = values.where(values != "", None)
    if length and max(map(len, values.tolist()), default=0) > length:
        out = pd.Series([v if v is None else v[:length] for v in out.tolist()], index=out.index, dtype=object)
    return out


def _number(f: FieldSpec, values: pd.Series, kind: str, rows: _Row, col: str) -> pd.Series:
    nums, bad = parse_numbers(values)
    rows.fail(bad, col, "not a number: ", values)
    if kind == "int":
        frac = nums.notna() & (nums != np.floor(nums.fillna(0)))
        rows.fail(frac, col, "not a whole number: ", values)
    return nums


def _date(f: FieldSpec, values: pd.Series, rows: _Row, col: str) -> pd.Series:
    dates, bad = parse_dates(values, f.formats)
    # as the FHIR loader: a date no clinical record holds is an error in the extract, not a fact (one past
    # pandas' range, 1677-2262, is among the bad ones: a calendar date all the same)
    lo, hi = PLAUSIBLE_YEARS
    years = dates.dt.year
    far = (dates.notna() & ((years < lo) | (years > hi))).to_numpy(dtype=bool)
    if bad.any():  # strptime only for the few cells pandas could not parse
        mask = bad.to_numpy(dtype=bool)
        far[mask] = [_calendar_date(v, f.formats) for v in values[mask].tolist()]
    rows.fail(far, col, "implausible date: ", values, f" (outside {lo}-{hi})")
    rows.fail(bad, col, "unparseable date: ", values, " (expected " + " or ".join(f.formats) + ")")
    return dates


def _calendar_date(text: str, formats: tuple[str, ...]) -> bool:
    for fmt in formats:
        try:
            datetime.datetime.strptime(text.strip(), fmt)
            return True
        except ValueError:
            continue
    return False


def _unit_factor(spec: MappingSpec, unit_values: pd.Series) -> pd.Series:
    if spec.units is None:
        return pd.Series(1.0, index=unit_values.index)
    uniq = {u: (spec.units.get(u).factor if u.strip() and spec.units.get(u) else 1.0) for u in unit_values.unique()}
    return unit_values.map(uniq).astype("float64")


def _column_field(spec: MappingSpec, out: OutputSpec, f: FieldSpec, chunk: pd.DataFrame, meta: cdm_spec.Field,
                  res: Resolved, rows: _Row, result: ChunkResult, extra: dict[str, pd.Series]) -> pd.Series:
    """The values of one column-fed field; fills companion source fields into ``extra``."""
    col = f.column
    raw = chunk[col]
    if f.default is not None:
        raw = raw.where(strip(raw) != "", str(f.default))
    dt = meta.datatype
    kind = "int" if dt == "integer" else "float" if dt == "float" else "date" if dt in ("date", "datetime") \
        else "text"
    table = out.table
    if f.vocabulary:
        codes = strip(raw)
        pairs = {c: res.concepts.get((f.vocabulary, c), (0, 0)) for c in codes.unique() if c}
        std = codes.map({c: p[1] for c, p in pairs.items()}).astype("float64")
        src = codes.map({c: p[0] for c, p in pairs.items()}).astype("float64")
        for c, (_, s) in pairs.items():
            if s == 0:
                result.unmapped[f"{f.vocabulary}|{c}"] += int((codes == c).sum())
        sv, sc = _companions(table, f.name)
        if sv and sv not in out.fields:
            extra[sv] = _text(strip(raw), _field_meta(table)[sv].varchar_length)
        if sc and sc not in out.fields:
            extra[sc] = src
        return std
    if f.code_table:
        ct = spec.code_tables[f.code_table]
        uniq = {v: ct.get(v) for v in raw.unique() if v.strip()}
        target = raw.map({v: e.target_concept_id for v, e in uniq.items() if e}).astype("float64")
        src = raw.map({v: e.source_concept_id for v, e in uniq.items() if e}).astype("float64")
        miss = raw.isin([v for v, e in uniq.items() if e is None]).to_numpy()
        if miss.any():
            if f.unmapped == "zero":
                target = target.where(~miss, 0)
                for v in raw[miss].unique():
                    result.unmapped[f"{f.code_table}|{v.strip()}"] += int((raw == v).sum())
            else:
                rows.fail(miss, col, "unknown local code: ", raw, f" (not in code table {f.code_table})")
        if f.strength_from and res.strengths:
            mg, _ = parse_dose(chunk[f.strength_from], "strength_mg")
            refined = [res.strengths.get((int(t), float(m))) if not (pd.isna(t) or pd.isna(m)) else None
                       for t, m in zip(target, mg, strict=False)]
            ref = pd.Series(refined, index=raw.index, dtype="object")
            target = ref.where(ref.notna(), target)
        sv, sc = _companions(table, f.name)
        if sv and sv not in out.fields:
            extra[sv] = _text(strip(raw), _field_meta(table)[sv].varchar_length)
        if sc and sc not in out.fields:
            extra[sc] = src.fillna(0)
        return target
    if f.units:
        uniq = {}
        for u in raw.unique():
            entry = spec.units.get(u) if (spec.units and u.strip()) else None
            uniq[u] = res.unit_concepts.get(entry.ucum_code, 0) if entry else (0 if u.strip() else np.nan)
            if u.strip() and not uniq[u]:
                result.unmapped[f"unit|{u.strip()}"] += int((raw == u).sum())
        sv, _ = _companions(table, f.name)
        if sv and sv not in out.fields:
            extra[sv] = _text(strip(raw), _field_meta(table)[sv].varchar_length)
        return raw.map(uniq)
    if f.range:
        low, high, bad = parse_range(raw)
        rows.fail(bad, col, "unparseable reference range: ", raw)
        vals = low if f.range == "low" else high
        if f.unit_column:
            vals = vals * _unit_factor(spec, chunk[f.unit_column])
        return vals
    if f.dose:
        vals, _ = parse_dose(raw, f.dose)  # a text without a schedule (an infusion's 'AUC 5 d1') gives none
        return vals
    if f.part:
        dates = _date(f, raw, rows, col)
        return getattr(dates.dt, f.part).astype("float64")
    if kind == "date":
        return _date(f, raw, rows, col)
    if kind in ("int", "float"):
        nums = _number(f, raw, kind, rows, col)
        if f.unit_column:
            nums = nums * _unit_factor(spec, chunk[f.unit_column])
        return nums
    return _text(raw, meta.varchar_length)


def _when_mask(out: OutputSpec, chunk: pd.DataFrame) -> pd.Series:
    if out.when is None:
        return pd.Series(True, index=chunk.index)
    vals = strip(chunk[out.when.column])
    mask = pd.Series(True, index=chunk.index)
    if out.when.present is not None:
        mask &= (vals != "") if out.when.present else (vals == "")
    if out.when.values_in is not None:
        allowed = {normalize(v) for v in out.when.values_in}
        mask &= vals.isin([v for v in vals.unique() if normalize(v) in allowed])
    if out.when.values_not_in is not None:
        banned = {normalize(v) for v in out.when.values_not_in}
        mask &= ~vals.isin([v for v in vals.unique() if normalize(v) in banned])
    return mask


def _row_keys(source: SourceSpec, chunk: pd.DataFrame) -> pd.Series:
    """The source key of each row: the spec's key columns, else a hash of the whole row's content."""
    if source.key:
        cols = [strip(chunk[c]) for c in source.key]
        return pd.Series(["\x1f".join(t) for t in zip(*cols, strict=False)] if len(cols) > 1 else cols[0].tolist(),
                         index=chunk.index, dtype=object)
    cols = [chunk[c] for c in chunk.columns]
    return pd.Series([hashlib.blake2b("\x1f".join(t).encode("utf-8"), digest_size=12).hexdigest()
                      for t in zip(*cols, strict=False)], index=chunk.index, dtype=object)


def map_chunk(spec: MappingSpec, source: SourceSpec, chunk: pd.DataFrame, rownums: pd.Series, file: str,
              res: Resolved) -> ChunkResult:
    """Map one chunk of a source (all cells text, '' empty) to OMOP rows, quarantine and skip counts."""
    n = len(chunk)
    result = ChunkResult(read=n)
    if n == 0:
        return result
    chunk = chunk.reset_index(drop=True)
    rownums = pd.Series(np.asarray(rownums), index=chunk.index)
    failed = _Row(n)
    keys = result.keys = _row_keys(source, chunk)
    person = None
    if source.patient_id:
        ids = strip(chunk[source.patient_id])
        failed.fail(ids == "", source.patient_id, "missing value: no patient id")
        pseud = {v: pseudonym(v, res.pseudonym_key) for v in ids.unique() if v}
        person = ids.map(pseud).astype(object).where(ids != "", None)
    # rows with the same key as an earlier row of the chunk are duplicates: skipped, not loaded twice
    dup = keys.duplicated(keep="first").to_numpy()
    built: list[tuple[OutputSpec, pd.Series, dict[str, pd.Series], dict[str, tuple[str, str, pd.Series]]]] = []
    any_output = np.zeros(n, dtype=bool)
    for out in source.outputs.values():
        mask = _when_mask(out, chunk).to_numpy()
        any_output |= mask
        meta = _field_meta(out.table)
        out_rows = _Row(n)
        cols: dict[str, pd.Series] = {}
        extra: dict[str, pd.Series] = {}
        refs: dict[str, tuple[str, str, pd.Series]] = {}
        for fname, f in out.fields.items():
            if f.ref is not None:
                target = source.outputs[f.ref]
                tmask = _when_mask(target, chunk)
                refs[fname] = (target.table, f"{source.name}.{f.ref}", keys.where(tmask, None))
                continue
            if f.column is None:
                cols[fname] = pd.Series([f.value] * n, index=chunk.index, dtype=object)
                continue
            cols[fname] = _column_field(spec, out, f, chunk, meta[fname], res, out_rows, result, extra)
        for k, v in extra.items():
            cols.setdefault(k, v)
        # auto fields: type concepts, required concept ids, drug end dates
        for fname in auto_fields(out.table):
            if fname.endswith("_type_concept_id") and fname not in cols:
                cols[fname] = pd.Series(spec.type_concept_id, index=chunk.index)
        for m in meta.values():
            if m.required and m.name.endswith("_concept_id") and m.name not in cols and not m.primary_key:
                cols[m.name] = pd.Series(0, index=chunk.index)
        if out.table == "drug_exposure" and "drug_exposure_start_date" in cols:
            start = cols["drug_exposure_start_date"]
            given = cols.get("drug_exposure_end_date")
            ds = cols.get("days_supply")
            derived = start + pd.to_timedelta((ds.fillna(1).clip(lower=1) - 1) if ds is not None else 0, unit="D")
            cols["drug_exposure_end_date"] = given.where(given.notna(), derived) if given is not None else derived
        # required values present (only where this output makes a row)
        for fname, m in meta.items():
            if m.required and not m.primary_key and fname != "person_id" and fname in cols:
                missing = cols[fname].isna().to_numpy() & mask
                if missing.any():
                    f = out.fields.get(fname)
                    src_col = f.column if f and f.column else None
                    out_rows.fail(missing, src_col, f"missing value: required {out.table}.{fname} is empty")
        active = mask & ~pd.isna(out_rows.reason) & pd.isna(failed.reason)
        failed.reason[active] = out_rows.reason[active]
        failed.column[active] = out_rows.column[active]
        built.append((out, pd.Series(mask, index=chunk.index), cols, refs))
    bad = ~pd.isna(failed.reason)
    # the payload keeps the columns the spec reads (not names or phones), the hospital id masked wherever
    # it appears (row ids often embed it)
    payload_cols = [c for c in chunk.columns if c in source.lines]
    for i in np.flatnonzero(bad & ~dup):
        hid = chunk.at[i, source.patient_id].strip() if source.patient_id else ""
        row = {c: chunk.at[i, c] for c in payload_cols}
        if hid:
            row = {c: v.replace(hid, "(patient id)") for c, v in row.items()}
        result.quarantine.append(QuarantineRow(file, int(rownums.iat[i]), failed.column[i], str(failed.reason[i]),
                                               json.dumps(row, ensure_ascii=False)))
    no_out = ~any_output & ~bad & ~dup
    if no_out.any():
        result.skipped["no output for the row ('when' conditions)"] += int(no_out.sum())
    if dup.any():
        result.skipped["duplicate row key within the chunk"] += int(dup.sum())
    good = ~bad & ~dup & any_output
    result.mapped = int(good.sum())
    for out, mask, cols, refs in built:
        keep = good & mask.to_numpy()
        if not keep.any():
            continue
        idx = np.flatnonzero(keep)
        frame = pd.DataFrame({k: v.iloc[idx].reset_index(drop=True) for k, v in cols.items()})
        if out.table == "person":
            # the loader fills person_id from the patient; the hospital id never lands in OMOP
            frame["person_source_value"] = person.iloc[idx].reset_index(drop=True) if person is not None else None
        rtype = PATIENT if out.table == "person" else f"{source.name}.{out.name}"
        own = person if out.table == "person" else (keys if out.id_field else None)
        tr = TableRows(out.name, out.table, rtype, frame,
                       own.iloc[idx].reset_index(drop=True) if own is not None else None,
                       person.iloc[idx].reset_index(drop=True) if person is not None else None,
                       {k: (t, rt, s.iloc[idx].reset_index(drop=True)) for k, (t, rt, s) in refs.items()},
                       rownums.iloc[idx].reset_index(drop=True))
        result.outputs += _route_by_domain(out, tr, res, result)
    return result


# The event tables a row can move between by its concept's domain (DESIGN §5, as the FHIR path's
# l059_omop.etl.route): each table's names for the same roles. Fields with no counterpart are dropped.
_PREFIX = {"condition_occurrence": "condition", "measurement": "measurement", "observation": "observation",
           "drug_exposure": "drug", "procedure_occurrence": "procedure", "device_exposure": "device"}
_DATES = {  # start date, start datetime, end date, end datetime
    "condition_occurrence": ("condition_start_date", "condition_start_datetime", "condition_end_date",
                             "condition_end_datetime"),
    "measurement": ("measurement_date", "measurement_datetime", None, None),
    "observation": ("observation_date", "observation_datetime", None, None),
    "drug_exposure": ("drug_exposure_start_date", "drug_exposure_start_datetime", "drug_exposure_end_date",
                      "drug_exposure_end_datetime"),
    "procedure_occurrence": ("procedure_date", "procedure_datetime", "procedure_end_date", "procedure_end_datetime"),
    "device_exposure": ("device_exposure_start_date", "device_exposure_start_datetime", "device_exposure_end_date",
                        "device_exposure_end_datetime"),
}
_EVENT = {"measurement": ("measurement_event_id", "meas_event_field_concept_id"),
          "observation": ("observation_event_id", "obs_event_field_concept_id")}


def _roles(table: str) -> dict[str, str]:
    p, d = _PREFIX[table], _DATES[table]
    out = {"concept": f"{p}_concept_id", "type": f"{p}_type_concept_id", "source_value": f"{p}_source_value",
           "source_concept": f"{p}_source_concept_id", "start_date": d[0], "start_datetime": d[1],
           "end_date": d[2], "end_datetime": d[3]}
    if table in _EVENT:
        out["event_id"], out["event_field"] = _EVENT[table]
    return {k: v for k, v in out.items() if v}


def field_translation(src: str, dst: str) -> dict[str, str | None]:
    """Field of event table ``src`` -> the field of ``dst`` with the same role (None: ``dst`` has none)."""
    s, d = _roles(src), _roles(dst)
    by_name = {v: k for k, v in s.items()}
    dst_names = {f.name for f in cdm_spec.tables()[dst]}
    return {f.name: d.get(by_name[f.name]) if f.name in by_name else (f.name if f.name in dst_names else None)
            for f in cdm_spec.tables()[src]}


def _route_by_domain(out: OutputSpec, tr: TableRows, res: Resolved, result: ChunkResult) -> list[TableRows]:
    """Split an output's rows by the domain of their standard concept: the target table follows the
    concept's domain, not the spec's table (DESIGN §5). Only a concept looked up from a column (vocabulary
    or code table) moves a row; concept 0 and concepts of unknown domain stay in the spec's table."""
    from l059_omop.etl.route import DOMAIN_TABLE

    if out.table not in _PREFIX or not res.domains:
        return [tr]
    cfield = f"{_PREFIX[out.table]}_concept_id"
    f = out.fields.get(cfield)
    if f is None or f.column is None or not (f.vocabulary or f.code_table) or cfield not in tr.frame:
        return [tr]
    concept = tr.frame[cfield]
    tables = {c: DOMAIN_TABLE.get(res.domains[c], "observation")
              for c in concept.dropna().unique().tolist() if c and int(c) in res.domains}
    target = concept.map({c: t for c, t in tables.items() if t != out.table})
    if target.isna().all():
        return [tr]
    parts = [tr.frame.index[target.isna().to_numpy()]] if target.isna().any() else []
    pieces = []
    if parts:
        pieces.append(_subset(tr, parts[0], out.table))
    for table in sorted(set(target.dropna())):
        rows = tr.frame.index[(target == table).to_numpy()]
        result.routed[(out.table, table)] += len(rows)
        pieces.append(_subset(tr, rows, table))
    return pieces


def _subset(tr: TableRows, rows: pd.Index, table: str) -> TableRows:
    """Rows ``rows`` of ``tr``, moved to ``table`` (fields renamed by role) when it differs."""
    def take(sr: pd.Series | None) -> pd.Series | None:
        return None if sr is None else sr.iloc[rows].reset_index(drop=True)

    frame = tr.frame.iloc[rows].reset_index(drop=True)
    refs = {k: (t, rt, take(sr)) for k, (t, rt, sr) in tr.refs.items()}
    if table != tr.table:
        names = field_translation(tr.table, table)
        frame = frame.rename(columns={c: names[c] for c in frame.columns if names.get(c)})
        frame = frame[[c for c in frame.columns if c in set(names.values())]]
        refs = {names[k]: v for k, v in refs.items() if names.get(k)}
        meta = _field_meta(table)
        for m in meta.values():  # required fields the source table did not have
            if m.required and m.name.endswith("_concept_id") and m.name not in frame and not m.primary_key \
                    and m.name != "person_id":
                frame[m.name] = 0
        d = _DATES[table]
        if d[2] and meta[d[2]].required and d[2] not in frame:
            frame[d[2]] = frame[d[0]]
    return TableRows(tr.output, table, tr.resource_type, frame, take(tr.keys), take(tr.person_keys), refs,
                     take(tr.rownums))
