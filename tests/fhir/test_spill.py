"""etl.spill.SpillList: in append order whatever part went to disk; and a load whose every fact comes before
its patient (all units held back to the end) writes what the same input in a helpful order writes, with the
held-back units on disk past the limit."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from fhir_builders import patient_resources, write_ndjson
from test_fhir_load import snapshot_without_runs

from l059_omop.db.api import init_db
from l059_omop.etl import spill
from l059_omop.etl.fhir.load import load_fhir
from l059_omop.etl.spill import SpillList


@pytest.mark.parametrize("n", [0, 3, 4, 9, 10, 11, 57])
def test_spill_list_keeps_order(n):
    s = SpillList(({"i": i} for i in range(n)), limit=4, chunk=3)
    s.append({"i": n})
    assert len(s) == n + 1 and bool(s)
    assert [x["i"] for x in s] == list(range(n + 1))
    assert [x["i"] for x in s] == list(range(n + 1))  # twice: the file is read again from its start
    assert s.spilled == max(0, n + 1 - 4) // 3 * 3
    assert [len(c) for c in s.chunks(5)] == [5] * ((n + 1) // 5) + ([(n + 1) % 5] if (n + 1) % 5 else [])
    s.close()
    assert not s and list(s) == []


def test_facts_before_their_patients_load_the_same(tmp_path, monkeypatch):
    people = [patient_resources(f"s{i}") for i in range(6)]
    ordered = [r for p in people for r in p]
    # the Patients and Encounters in the last file: every other resource waits for them
    write_ndjson(tmp_path / "a" / "1.ndjson", ordered)
    write_ndjson(tmp_path / "b" / "1.ndjson", [r for r in ordered if r["resourceType"] not in ("Patient", "Encounter")])
    write_ndjson(tmp_path / "b" / "2.ndjson", [r for r in ordered if r["resourceType"] in ("Patient", "Encounter")])
    want = sa.create_engine(f"duckdb:///{tmp_path / 'want.duckdb'}")
    got = sa.create_engine(f"duckdb:///{tmp_path / 'got.duckdb'}")
    init_db(want)
    init_db(got)
    load_fhir(want, [tmp_path / "a"], workers=1, batch_size=5)
    monkeypatch.setattr(spill, "SPILL_LIMIT", 7)
    monkeypatch.setattr(spill, "SPILL_CHUNK", 2)
    spilled = []
    real_flush = SpillList._flush

    def counting(self):
        spilled.append(len(self._pending))
        real_flush(self)

    monkeypatch.setattr(SpillList, "_flush", counting)
    rep = load_fhir(got, [tmp_path / "b"], workers=1, batch_size=5)
    assert sum(spilled) > 50  # most of the held-back units went to disk
    assert rep.check() == [] and rep.quarantined == 0
    assert snapshot_without_runs(got, locators=False) == snapshot_without_runs(want, locators=False)
