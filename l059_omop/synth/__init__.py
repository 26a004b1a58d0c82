"""Synthetic ES-SCLC patients with a known truth (issue 3): ``generate(n, fmt, out, seed, ...)``.

A pure, seeded generator of patient histories (``generator``), the answer key computed from them
(``truth``), and three emitters (``emit_omop``, ``emit_fhir``, ``emit_records``). Patients stream one at a
time, so memory does not grow with N; the same arguments give byte-identical files.
"""

from __future__ import annotations

from l059_omop.synth.api import FORMATS, SynthSummary, generate
from l059_omop.synth.params import SynthParams, Weibull

__all__ = ["FORMATS", "SynthParams", "SynthSummary", "Weibull", "generate"]
