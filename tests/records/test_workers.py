"""load_records with worker processes: the same database as in one process (ids, rows, quarantine, report),
whatever the number of workers; and the workers' byte-range reading of a file gives the rows the streaming
reader gives, or is refused (quoted cells, blank lines ...)."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from l059_omop.db.api import init_db
from l059_omop.records import load_records, loader, reader
from l059_omop.records.spec import load_spec
from l059_omop.resources import mappings_path
from l059_omop.synth import generate

TEMPLATE = mappings_path("records", "synth_site.yaml")
CDM = ("person", "condition_occurrence", "drug_exposure", "measurement", "observation", "death",
       "visit_occurrence", "procedure_occurrence", "observation_period")


@pytest.fixture(scope="module")
def extracts(tmp_path_factory) -> Path:
    """Synth extracts of 40 patients with a broken date, a row of an unknown patient and a quoted cell (that
    file is read by the loading process: a quoted cell may hold a line end)."""
    d = tmp_path_factory.mktemp("x")
    generate(40, "records", d, seed=3)

    def edit(name: str, fn) -> None:
        path = d / name
        with path.open(encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.reader(fh))
        fn(rows)
        with path.open("w", encoding="utf-8", newline="") as fh:
            csv.writer(fh, lineterminator="\n").writerows(rows)

    def broken(rows):
        rows[5][2] = "2023-13-45"
        rows[9][1] = "ZY99999999"

    def quoted(rows):
        rows[3][4] = "国际, 标准化比值"

    edit("drug_administrations.csv", broken)
    edit("lab_results.csv", quoted)
    return d


def _load(tmp_path: Path, name: str, folder: Path, **kw):
    engine = sa.create_engine(f"duckdb:///{tmp_path / name}")
    init_db(engine)
    result = load_records(engine, TEMPLATE, [folder], chunk_rows=150, **kw)
    return engine, result


def _dump(engine) -> dict[str, list[tuple]]:
    out = {}
    with engine.connect() as con:
        for t in CDM:
            out[t] = sorted(tuple(str(v) for v in r) for r in con.execute(sa.text(f"select * from cdm.{t}")))
        out["map"] = sorted(tuple(str(v) for v in r) for r in con.execute(sa.text(
            "select source_system, resource_type, source_id, omop_table, omop_id from etl.source_id_map")))
        out["resource"] = sorted(tuple(str(v) for v in r) for r in con.execute(sa.text(
            "select source_system, resource_type, source_id, content_sha256 from etl.source_resource")))
        out["quarantine"] = sorted(tuple(str(v) for v in r) for r in con.execute(sa.text(
            "select resource_type, source_locator, reason, payload from etl.quarantine")))
    return out


def _counts(report) -> dict:
    return {rt: (c.read, c.mapped, c.unchanged, dict(c.quarantined), dict(c.skipped))
            for rt, c in sorted(report.types.items())} | {"unmapped": dict(report.unmapped),
                                                          "notes": dict(report.notes)}


@pytest.mark.parametrize("through_pool", [False, True])
def test_workers_give_the_same_database(extracts, tmp_path, monkeypatch, through_pool):
    one, r1 = _load(tmp_path, "one.duckdb", extracts, workers=1)
    if through_pool:  # every chunk through the workers, every file cut by them
        monkeypatch.setattr(loader, "BIG_FILE", 0)
        monkeypatch.setattr(loader, "MAP_WHILE_STARTING", False)
    two, r2 = _load(tmp_path, "two.duckdb", extracts, workers=2)
    try:
        assert r1.report.quarantined == r2.report.quarantined == 2
        assert _counts(r1.report) == _counts(r2.report)
        assert r1.report.rows_inserted == r2.report.rows_inserted
        assert _dump(one) == _dump(two)
        # a reload with the other number of workers writes nothing
        again = load_records(one, TEMPLATE, [extracts], chunk_rows=150, workers=2).report
        assert sum(again.rows_inserted.values()) == 0
        assert sum(c.unchanged for c in again.types.values()) == sum(c.mapped for c in r1.report.types.values())
    finally:
        one.dispose()
        two.dispose()


def test_a_failing_chunk_in_a_worker_stops_the_load(extracts, tmp_path, monkeypatch):
    """An error in a worker reaches the caller; the chunks before it stay committed, none after it."""
    monkeypatch.setattr(loader, "MAP_WHILE_STARTING", False)
    engine = sa.create_engine(f"duckdb:///{tmp_path / 'f.duckdb'}")
    init_db(engine)
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in extracts.glob("*.csv"):
        (bad / f.name).write_bytes(f.read_bytes())
    # a row with more cells than the header: pandas refuses the chunk that has it
    with (bad / "staging.csv").open("a", encoding="utf-8") as fh:
        fh.write("X-1,ZY20007919,2022-01-01,VALG,ES,extra,cells\n")
    try:
        with pytest.raises(Exception, match="not a readable CSV near row"):
            load_records(engine, TEMPLATE, [bad], chunk_rows=150, workers=2)
    finally:
        engine.dispose()


def _input(path: Path, source: str = "staging") -> reader.Input:
    spec = load_spec(TEMPLATE)
    return reader.Input(path, spec.sources[source])


def _same_as_stream(inp: reader.Input, size: int) -> list[reader.ByteChunk] | None:
    bcs = reader.byte_chunks(inp, size)
    if bcs is None:
        return None
    stream = list(reader.chunks(inp, size))
    cut = [reader.read_byte_chunk(inp, bc) for bc in bcs]
    assert len(stream) == len(cut)
    for (c1, r1), (c2, r2) in zip(stream, cut, strict=True):
        pd.testing.assert_frame_equal(c1.reset_index(drop=True), c2.reset_index(drop=True))
        assert r1.tolist() == r2.tolist()
    assert [bc.rows for bc in bcs] == [len(c) for c, _ in stream]
    return bcs


@pytest.mark.parametrize("variant", ["as is", "crlf", "no final line end", "crlf, no final line end",
                                     "gb18030", "bom"])
def test_byte_chunks_give_the_streamed_rows(extracts, tmp_path, variant):
    text = (extracts / "staging.csv").read_bytes()
    data = {"as is": text, "crlf": text.replace(b"\n", b"\r\n"), "no final line end": text.rstrip(b"\n"),
            "crlf, no final line end": text.replace(b"\n", b"\r\n").rstrip(b"\r\n"),
            "gb18030": text.decode("utf-8").encode("gb18030"), "bom": b"\xef\xbb\xbf" + text}[variant]
    path = tmp_path / "staging.csv"
    path.write_bytes(data)
    inp = _input(path)
    if variant == "gb18030":
        inp = reader.Input(path, dataclasses.replace(inp.source, encoding="gb18030"))
    for size in (1, 7, 10_000):
        assert _same_as_stream(inp, size) is not None


@pytest.mark.parametrize("variant", ["quote", "blank line", "whitespace line", "lone CR", "NUL", "header only",
                                     "header and line end", "whitespace at the end"])
def test_byte_chunks_refused_where_a_line_may_not_be_a_row(extracts, tmp_path, variant):
    text = (extracts / "staging.csv").read_bytes()
    head, rest = text.split(b"\n", 1)
    data = {"quote": head + b"\n" + rest.replace(b",", b',"x"', 1), "blank line": head + b"\n\n" + rest,
            "whitespace line": text + b"  \t\n" + rest, "lone CR": text.replace(b"\n", b"\r", 3),
            "NUL": text.replace(b"ES", b"E\x00S", 1), "header only": head, "header and line end": head + b"\n",
            "whitespace at the end": text + b"   "}[variant]
    path = tmp_path / "staging.csv"
    path.write_bytes(data)
    assert reader.byte_chunks(_input(path), 7) is None


def test_workers_on_both_databases(extracts, rec_engine, monkeypatch):
    """DuckDB and PostgreSQL through the workers (no connection there); a reload in one process writes nothing."""
    monkeypatch.setattr(loader, "MAP_WHILE_STARTING", False)
    first = load_records(rec_engine, TEMPLATE, [extracts], chunk_rows=150, workers=2).report
    assert first.quarantined == 2 and sum(first.rows_inserted.values()) > 2000
    again = load_records(rec_engine, TEMPLATE, [extracts], chunk_rows=150, workers=1).report
    assert sum(again.rows_inserted.values()) == 0
    assert _counts(again) == {**_counts(first), **{rt: (c.read, c.mapped, c.mapped, dict(c.quarantined), dict(c.skipped))
                                                   for rt, c in sorted(first.types.items())}}
