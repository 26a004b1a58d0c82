"""Loaders' shared machinery (sink, ids, run report) and the FHIR R4 loader."""

from __future__ import annotations

__all__ = ["Sink", "load_fhir"]


def __getattr__(name: str):
    if name == "Sink":
        from l059_omop.etl.sink import Sink

        return Sink
    if name == "load_fhir":
        from l059_omop.etl.fhir.load import load_fhir

        return load_fhir
    raise AttributeError(name)
