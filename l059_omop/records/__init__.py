"""Hospital record extracts (CSV, Excel) -> OMOP CDM through a declarative mapping (``mappings/records/``).

``load_spec`` validates a mapping; ``map_chunk`` is the pure row transform; ``load_records`` streams files
through it into the loaders' shared sink. See ``docs/records.md``.
"""

from __future__ import annotations

from l059_omop.records.spec import MappingSpec, SpecError, load_spec

__all__ = ["MappingSpec", "SpecError", "load_spec", "load_records", "RecordsResult", "map_chunk"]


def __getattr__(name: str):
    if name in ("load_records", "RecordsResult"):
        from l059_omop.records import loader

        return getattr(loader, name)
    if name == "map_chunk":
        from l059_omop.records.mapper import map_chunk

        return map_chunk
    raise AttributeError(name)
