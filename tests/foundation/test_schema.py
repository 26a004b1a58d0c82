"""The generated CDM schema equals the OHDSI v5.4 specification, checked through each database's catalog."""

from __future__ import annotations

import datetime as dt
import filecmp

import pytest
import sqlalchemy as sa

from . import _spec


def _catalog_columns(con, dialect: str) -> dict[tuple[str, str], tuple[str, int | None, bool]]:
    if dialect == "duckdb":
        rows = con.execute(sa.text(
            "select table_name, column_name, data_type, null, is_nullable from duckdb_columns() "
            "where schema_name = 'cdm'"))
        return {(t, c): (ty, None, nullable) for t, c, ty, _, nullable in rows}
    rows = con.execute(sa.text(
        "select table_name, column_name, data_type, character_maximum_length, is_nullable "
        "from information_schema.columns where table_schema = 'cdm'"))
    return {(t, c): (ty, n, nullable == "YES") for t, c, ty, n, nullable in rows}


def _primary_keys(con, dialect: str) -> set[tuple[str, str]]:
    if dialect == "duckdb":
        rows = con.execute(sa.text(
            "select table_name, unnest(constraint_column_names) from duckdb_constraints() "
            "where schema_name = 'cdm' and constraint_type = 'PRIMARY KEY'"))
    else:
        rows = con.execute(sa.text(
            "select k.table_name, k.column_name from information_schema.table_constraints c "
            "join information_schema.key_column_usage k on k.constraint_name = c.constraint_name "
            "and k.table_schema = c.table_schema "
            "where c.table_schema = 'cdm' and c.constraint_type = 'PRIMARY KEY'"))
    return {(t, c) for t, c in rows}


def test_bundled_spec_is_the_ohdsi_file():
    shared = _spec.SHARED / "omop" / "OMOP_CDMv5.4_Field_Level.csv"
    if not shared.is_file():
        pytest.skip(f"{shared} not present (CI clones shared/ beside the repository)")
    assert filecmp.cmp(shared, _spec.OMOP_DIR / "OMOP_CDMv5.4_Field_Level.csv", shallow=False)
    assert len(_spec.tables()) == 39
    assert len(_spec.foreign_keys()) == 176
    assert len(_spec.primary_keys()) == 28
    assert len(_spec.secondary_indexes()) == 70
    assert ("note_nlp", "offset") in _spec.columns()  # spelt "offset" (quoted) in the file


def test_schema_matches_spec(shared_engine):
    """Tables, columns, types, nullability and primary keys; on PostgreSQL foreign keys and indexes."""
    dialect = shared_engine.dialect.name
    spec = _spec.columns()
    with shared_engine.connect() as con:
        cat = _catalog_columns(con, dialect)
        assert {t for t, _ in cat} == _spec.tables()
        assert set(cat) == set(spec), "columns differ from the specification"
        wrong = []
        for key, (datatype, required) in sorted(spec.items()):
            ty, length, nullable = cat[key]
            if dialect == "duckdb":
                expected = (_spec.duckdb_type(datatype), None, not required)
            else:
                expected = (*_spec.pg_type(datatype), not required)
            if (ty, length, nullable) != expected:
                wrong.append(f"{key}: {(ty, length, nullable)} != {expected}")
        assert not wrong, "\n".join(wrong)
        assert _primary_keys(con, dialect) == _spec.primary_keys()
        if dialect == "duckdb":
            fks = con.execute(sa.text("select count(*) from duckdb_constraints() "
                                      "where schema_name = 'cdm' and constraint_type = 'FOREIGN KEY'")).scalar()
            assert fks == 0
            # the float columns are DOUBLE, never DuckDB's default DECIMAL(18,3)
            assert not [k for k, v in cat.items() if v[0].startswith("DECIMAL")]
        else:
            _check_postgres_keys_and_indexes(con)


def _check_postgres_keys_and_indexes(con) -> None:
    fks = {tuple(r) for r in con.execute(sa.text("""
        select cl.relname, a.attname, rcl.relname, ra.attname
        from pg_constraint c
        join pg_class cl on cl.oid = c.conrelid
        join pg_namespace n on n.oid = cl.relnamespace
        join pg_class rcl on rcl.oid = c.confrelid
        join pg_attribute a on a.attrelid = c.conrelid and a.attnum = c.conkey[1]
        join pg_attribute ra on ra.attrelid = c.confrelid and ra.attnum = c.confkey[1]
        where c.contype = 'f' and n.nspname = 'cdm' and cardinality(c.conkey) = 1"""))}
    n_fk = con.execute(sa.text(
        "select count(*) from pg_constraint c join pg_namespace n on n.oid = c.connamespace "
        "where c.contype = 'f' and n.nspname = 'cdm'")).scalar()
    indexes = {(r[0], r[1]): r[2] for r in con.execute(sa.text(
        "select tablename, indexname, indexdef from pg_indexes where schemaname = 'cdm'"))}
    n_tables = con.execute(sa.text(
        "select count(*) from information_schema.tables where table_schema = 'cdm'")).scalar()
    assert n_tables == 39
    assert n_fk == 176
    assert fks == _spec.foreign_keys()
    # the 98 indexes of the official PostgreSQL DDL: 70 secondary ones plus one per primary key
    assert len(indexes) == 98
    secondary = {name for name, _, _ in _spec.secondary_indexes()}
    for name, table, column in _spec.secondary_indexes():
        assert (table, name) in indexes, f"index {name} missing"
        assert indexes[(table, name)].endswith(f"({column})"), indexes[(table, name)]
    pk_indexes = {t for (t, n) in indexes if n not in secondary}
    assert pk_indexes == {t for t, _ in _spec.primary_keys()}


def test_float_round_trip(shared_engine):
    """0.123456 survives: DuckDB's DECIMAL(18,3) default would give 0.123 (DESIGN §3)."""
    with shared_engine.begin() as con:  # concepts of the bundled vocabulary, so PostgreSQL's foreign keys hold
        con.execute(sa.text(
            "insert into cdm.drug_strength (drug_concept_id, ingredient_concept_id, amount_value, "
            "amount_unit_concept_id, numerator_value, valid_start_date, valid_end_date) "
            "values (2000000002, 2000000005, 0.123456, 8576, 123456789.123456, :d, :d)"), {"d": dt.date(2024, 1, 2)})
    with shared_engine.connect() as con:
        value, big = con.execute(sa.text("select amount_value, numerator_value from cdm.drug_strength "
                                         "where ingredient_concept_id = 2000000005")).one()
    assert float(value) == pytest.approx(0.123456, abs=1e-12)
    assert float(big) == pytest.approx(123456789.123456, abs=1e-6)
