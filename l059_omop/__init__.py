"""l059-omop: FHIR and hospital records -> OMOP CDM v5.4, the ALTER-L059 cohort, and its outcomes.

The public API is small and returns pandas frames or dataclasses; names are imported lazily so that
``import l059_omop`` stays cheap::

    import l059_omop
    engine = l059_omop.connect("duckdb:///l059.duckdb")
    l059_omop.init_db(engine)
    attrition = l059_omop.build_cohort(engine)
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    "connect": "l059_omop.db.engine",
    "init_db": "l059_omop.db.api",
    "import_cdm": "l059_omop.db.api",
    "Vocabulary": "l059_omop.vocab.lookup",
    "build_cohort": "l059_omop.cohort",
    "compute_outcomes": "l059_omop.outcomes",
    "load_fhir": "l059_omop.etl",
    "load_records": "l059_omop.records",
    "generate": "l059_omop.synth",
    "run_checks": "l059_omop.dq",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'l059_omop' has no attribute {name!r}")
