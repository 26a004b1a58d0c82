"""import-cdm into a database that init-db already made (foreign keys in place) loads in any file order."""

from __future__ import annotations

import sqlalchemy as sa

from l059_omop.db.api import import_cdm, init_db
from l059_omop.synth import generate


def test_import_into_initialised_database(db_url, tmp_path):
    out = tmp_path / "omop"
    generate(20, "omop", out, seed=7)
    engine = sa.create_engine(db_url)
    try:
        init_db(engine)
        result = import_cdm(engine, out)
        assert result.constraint_failures == []
        with engine.connect() as con:
            persons = con.execute(sa.text("select count(*) from cdm.person")).scalar_one()
            conditions = con.execute(sa.text("select count(*) from cdm.condition_occurrence")).scalar_one()
        assert persons == 20 == result.rows["person"]
        assert conditions == result.rows["condition_occurrence"] > 0
        if engine.dialect.name == "postgresql":
            with engine.connect() as con:
                fks = con.execute(sa.text(
                    "select count(*) from information_schema.table_constraints "
                    "where table_schema = 'cdm' and constraint_type = 'FOREIGN KEY'")).scalar_one()
            assert fks == 176
    finally:
        engine.dispose()
