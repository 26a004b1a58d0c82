"""The FHIR loader's rules, read from ``mappings/fhir/`` (status / intent rules, type concepts, code systems,
tumour response values): data, not code, so a site can read and change them."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from functools import lru_cache

import yaml

from l059_omop.resources import mappings_path
from l059_omop.vocab import vocabulary_for_system

OHDSI_PREFIX = "urn:ohdsi:vocabulary:"


@dataclass(frozen=True)
class Rules:
    raw: dict
    response_values: dict  # (system or "text", code or lower-cased text) -> L059 concept_code
    # answers of vocabulary() and type_concept(), asked once per coding / resource (the rules never change)
    _memo: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def status(self) -> dict:
        return self.raw["status"]

    def type_concept(self, resource_type: str) -> int:
        key = ("type", resource_type)
        got = self._memo.get(key)
        if got is None:
            t = self.raw["type_concept"]
            got = self._memo[key] = int(t.get(resource_type, t["default"]))
        return got

    def fallback_domain(self, resource_type: str) -> str:
        return self.raw["fallback_domain"].get(resource_type, "Observation")

    def vocabulary(self, system: str | None) -> str | None:
        if not system:
            return None
        key = ("system", system)
        if key not in self._memo:
            self._memo[key] = self._vocabulary(system)
        return self._memo[key]

    def _vocabulary(self, system: str) -> str | None:
        v = vocabulary_for_system(system)
        if v:
            return v
        extra = self.raw.get("systems", {})
        if system in extra:
            return extra[system]
        if system.startswith(OHDSI_PREFIX):
            return system[len(OHDSI_PREFIX):].replace("-", " ")
        return None

    @property
    def known_modifier_extensions(self) -> frozenset:
        return frozenset(self.raw.get("known_modifier_extensions") or [])

    @property
    def response_codes(self) -> frozenset:
        return frozenset(tuple(x) for x in self.raw["response"]["codes"])

    @property
    def value_is_fact(self) -> frozenset:
        return frozenset(tuple(x) for x in self.raw["value_is_fact"])

    @property
    def ae_grade_codes(self) -> frozenset:
        return frozenset(tuple(x) for x in self.raw.get("ae_grade_codes", []))

    def response_value(self, system: str | None, code: str | None, text: str | None) -> str | None:
        if code and system and (system, code) in self.response_values:
            return self.response_values[(system, code)]
        if text:
            return self.response_values.get(("text", text.strip().lower()))
        return None


@lru_cache(maxsize=1)
def rules() -> Rules:
    raw = yaml.safe_load(mappings_path("fhir", "rules.yaml").read_text(encoding="utf-8"))
    values = {}
    with mappings_path("fhir", "response_values.csv").open(encoding="utf-8", newline="") as fh:
        for r in csv.DictReader(fh):
            key = r["code_or_text"].strip()
            values[(r["system"], key.lower() if r["system"] == "text" else key)] = r["concept_code"]
    return Rules(raw, values)
