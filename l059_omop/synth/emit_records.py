"""Hospital extracts for synthetic patients: the CSV files a Chinese hospital information system exports.

Local codes and names (安罗替尼胶囊 12mg, 盐酸安罗替尼胶囊, anlotinib ...), dose text, lab units and reference
ranges, response words in three styles (PR / 部分缓解 / partial response). Hospital numbers, fake names
(prefixed 测试) and phones (100...) are in the extracts and never needed in OMOP. Columns: docs/synth.md.
"""

from __future__ import annotations

import csv
import io
from datetime import date

from l059_omop.synth.codes import codes
from l059_omop.synth.model import (
    AE,
    CONDITION,
    DRUG,
    ECOG,
    LAB,
    RADIOTHERAPY,
    RESPONSE,
    SOD,
    STAGE,
    VISIT,
    Patient,
)
from l059_omop.synth.truth import Truth

FILES: dict[str, list[str]] = {
    "patients.csv": ["hospital_id", "patient_name", "sex", "birth_date", "phone", "ethnicity", "first_visit_date"],
    "diagnoses.csv": ["diag_id", "hospital_id", "diag_date", "diag_code", "diag_name", "diag_type"],
    "staging.csv": ["stage_id", "hospital_id", "stage_date", "stage_system", "stage_text"],
    "drug_orders.csv": ["order_id", "hospital_id", "order_date", "dispense_date", "drug_code", "drug_name",
                        "generic_name", "spec", "dose", "dose_unit", "usage_text", "route", "days_supply",
                        "quantity", "quantity_unit"],
    "drug_administrations.csv": ["admin_id", "hospital_id", "admin_date", "drug_code", "drug_name", "generic_name",
                                 "dose_text", "route", "cycle"],
    "lab_results.csv": ["result_id", "hospital_id", "report_date", "item_code", "item_name", "result_value", "unit",
                        "ref_range", "abnormal_flag", "specimen"],
    "assessments.csv": ["assess_id", "hospital_id", "assess_date", "scale", "score"],
    "imaging.csv": ["exam_id", "hospital_id", "exam_date", "exam_name", "target_lesion_sum_mm", "response",
                    "criteria"],
    "radiotherapy.csv": ["rt_id", "hospital_id", "start_date", "end_date", "rt_code", "site", "technique",
                         "total_dose_gy", "fractions"],
    "adverse_events.csv": ["ae_id", "hospital_id", "onset_date", "end_date", "ae_term", "ctcae_term", "grade",
                           "related_drug"],
    "followup.csv": ["fu_id", "hospital_id", "followup_date", "status", "death_date", "note"],
}
DIAG_TYPE = {"diagnosis": "病理诊断", "ls": "病理诊断", "relapse": "主要诊断", "staging": "主要诊断"}
RESPONSE_STYLES = ("code", "zh", "en")
RESPONSE_EN = {"CR": "complete response", "PR": "partial response", "SD": "stable disease",
               "PD": "progressive disease", "NE": "not evaluable"}


def _d(d: date | None) -> str:
    return d.isoformat() if d else ""


def _n(v: float | None) -> str:
    if v is None:
        return ""
    return str(int(v)) if float(v).is_integer() else repr(v)


def patient_records(p: Patient) -> dict[str, list[tuple]]:
    c = codes()
    hid = p.hospital_id
    out: dict[str, list[tuple]] = {f: [] for f in FILES}
    seq = dict.fromkeys(FILES, 0)

    def nid(f: str) -> str:
        seq[f] += 1
        return f"{hid}-{seq[f]:03d}"

    style = RESPONSE_STYLES[p.index % 3]
    anl_style = p.index % 3  # 0: 安罗替尼胶囊 12mg, 1: 盐酸安罗替尼胶囊, 2: English
    evs = p.sorted_events()
    first = min(e.start for e in evs)
    out["patients.csv"].append((hid, p.name, "男" if p.sex == "M" else "女", _d(p.birth_date), p.phone, "汉族",
                                _d(first)))
    for e in evs:
        if e.kind == CONDITION:
            k = c["conditions"][e.code]
            out["diagnoses.csv"].append((nid("diagnoses.csv"), hid, _d(e.start), k["local"], k["zh"],
                                         DIAG_TYPE.get(e.context, "其他诊断")))
        elif e.kind == STAGE:
            k = c["stages"][e.code]
            text = k["zh"] if p.index % 2 else ("ES" if e.code == "valg_es" else "LS")
            out["staging.csv"].append((nid("staging.csv"), hid, _d(e.start), "VALG", text))
        elif e.kind == DRUG:
            k = c["drugs"][e.code]
            if k["route"] == "oral":
                strength = k.get("strength")
                if k["class"] == "anlotinib":
                    if anl_style == 0 or strength is None:
                        name = k["zh"] if strength else "盐酸安罗替尼胶囊"
                    elif anl_style == 1:
                        name = "盐酸安罗替尼胶囊"
                    else:
                        name = f"anlotinib {strength} mg"
                    spec = f"{strength}mg*7粒" if strength else ""
                    usage = f"{strength} mg qd d1-14 q3w" if strength else "qd d1-14 q3w"
                    dose, unit, qunit = (_n(strength) if strength else ""), ("mg" if strength else ""), "粒"
                else:
                    name, spec, usage, dose, unit, qunit = k["zh"], "", f"{k['dose']} qd", "", "", "片"
                out["drug_orders.csv"].append((nid("drug_orders.csv"), hid, _d(e.start), _d(e.start), k["local"], name,
                                               k["name"] if k["class"] != "anlotinib" else "anlotinib", spec,
                                               dose, unit, usage, "口服", e.days_supply or "", _n(e.quantity),
                                               qunit))
            else:
                cyc = e.context.split(" ")[1] if e.context.startswith("induction C") else e.context
                out["drug_administrations.csv"].append((nid("drug_administrations.csv"), hid, _d(e.start),
                                                        k["local"], k["zh"], k["name"], k["dose"], "静脉滴注",
                                                        cyc))
        elif e.kind == LAB:
            k = c["measurements"][e.code]
            unit = "" if e.code == "inr" else "s"
            lo = k.get("range_low")
            rng = f"{lo:.2f}-{e.range_high:.2f}" if e.code == "inr" and e.range_high is not None else \
                f"{lo:.1f}-{e.range_high:.1f}" if e.range_high is not None else ""
            flag = "H" if e.range_high is not None and e.value is not None and e.value > e.range_high else ""
            out["lab_results.csv"].append((nid("lab_results.csv"), hid, _d(e.start), k["local"], k["zh"],
                                           _n(e.value), unit, rng, flag, "血浆"))
        elif e.kind == ECOG:
            out["assessments.csv"].append((nid("assessments.csv"), hid, _d(e.start), "ECOG", _n(e.value)))
        elif e.kind == SOD:
            out["imaging.csv"].append((nid("imaging.csv"), hid, _d(e.start), "胸腹部增强CT", _n(e.value), "",
                                       "RECIST 1.1"))
        elif e.kind == RESPONSE:
            v = e.value_code or ""
            text = v if style == "code" else c["responses"][v]["zh"] if style == "zh" else RESPONSE_EN[v]
            out["imaging.csv"].append((nid("imaging.csv"), hid, _d(e.start), "胸腹部增强CT", "", text, "RECIST 1.1"))
        elif e.kind == RADIOTHERAPY:
            k = c["procedures"][e.code]
            out["radiotherapy.csv"].append((nid("radiotherapy.csv"), hid, _d(e.start), _d(e.end), k["local"], "胸部",
                                            "IMRT", _n(e.value), 30))
        elif e.kind == AE:
            k = c["adverse_events"][e.code]
            out["adverse_events.csv"].append((nid("adverse_events.csv"), hid, _d(e.start), _d(e.end), k["zh"],
                                              k["ctcae"], e.grade, "安罗替尼"))
        elif e.kind == VISIT:
            status = "失访" if e.context == "lost to follow-up" else "存活"
            out["followup.csv"].append((nid("followup.csv"), hid, _d(e.start), status, "", e.context))
    if p.death_date is not None:
        out["followup.csv"].append((nid("followup.csv"), hid, _d(p.death_date), "死亡", _d(p.death_date), ""))
    return out


class RecordsRenderer:
    def headers(self) -> dict[str, str]:
        return {f: ",".join(cols) + "\n" for f, cols in FILES.items()}

    def render(self, patients: list[tuple[Patient, Truth]]) -> tuple[dict[str, str], dict[str, int]]:
        bufs = {f: io.StringIO() for f in FILES}
        writers = {f: csv.writer(bufs[f], lineterminator="\n") for f in FILES}
        counts = dict.fromkeys(FILES, 0)
        for p, _ in patients:
            for f, rows in patient_records(p).items():
                if rows:
                    writers[f].writerows(rows)
                    counts[f] += len(rows)
        return {f: b.getvalue() for f, b in bufs.items()}, counts
