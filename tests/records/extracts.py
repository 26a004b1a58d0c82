"""Small hand-made hospital extracts in the layout of ``synth --format records`` (docs/synth.md), read by
mappings/records/synth_site.yaml: three patients (ZY000123 alive, ZY000456 dead, ZY000789 without events),
every file of the layout, and optionally broken rows: an unparseable date, an unknown local drug name,
text in a number column, a row of an unknown patient.
"""

from __future__ import annotations

import csv
from pathlib import Path

HOSPITAL_IDS = ("ZY000123", "ZY000456", "ZY000789")
NAMES = ("测试张伟", "测试李娜", "测试王芳")

FILES: dict[str, tuple[list[str], list[list[str]]]] = {
    "patients.csv": (["hospital_id", "patient_name", "sex", "birth_date", "phone", "ethnicity", "first_visit_date"], [
        ["ZY000123", "测试张伟", "男", "1958-03-14", "10000000001", "汉族", "2022-01-10"],
        ["ZY000456", "测试李娜", "女", "1961/11/02", "10000000002", "汉族", "2020-06-01"],
        ["ZY000789", "测试王芳", "女", "1970年5月9日", "10000000003", "汉族", ""],
    ]),
    "diagnoses.csv": (["diag_id", "hospital_id", "diag_date", "diag_code", "diag_name", "diag_type"], [
        ["ZY000123-001", "ZY000123", "2022-01-10", "C34.901", "小细胞肺癌", "病理诊断"],
        ["ZY000456-001", "ZY000456", "2022-02-15", "M80410/3 C34.1", "肺上叶小细胞癌", "病理诊断"],
        ["ZY000456-002", "ZY000456", "2020-06-01", "M06.900", "类风湿关节炎", "其他诊断"],
    ]),
    "staging.csv": (["stage_id", "hospital_id", "stage_date", "stage_system", "stage_text"], [
        ["ZY000123-001", "ZY000123", "2022-01-12", "VALG", "广泛期"],
        ["ZY000456-001", "ZY000456", "2021-03-01", "VALG", "LS"],
        ["ZY000456-002", "ZY000456", "2022-02-20", "VALG", "ES"],
    ]),
    "drug_orders.csv": (["order_id", "hospital_id", "order_date", "dispense_date", "drug_code", "drug_name",
                         "generic_name", "spec", "dose", "dose_unit", "usage_text", "route", "days_supply",
                         "quantity", "quantity_unit"], [
        ["ZY000123-001", "ZY000123", "2022-04-01", "2022-04-01", "XL01EX-ALTN12", "安罗替尼胶囊 12mg", "anlotinib",
         "12mg*7粒", "12", "mg", "12 mg qd d1-14 q3w", "口服", "14", "14", "粒"],
        ["ZY000123-002", "ZY000123", "2022-04-22", "2022-04-22", "XL01EX-ALTN10", "盐酸安罗替尼胶囊", "anlotinib",
         "10mg*7粒", "10", "mg", "10mg 每日一次 d1-14 q3w", "口服", "14", "14", "粒"],
        ["ZY000456-001", "ZY000456", "2022-06-01", "2022-06-01", "XL01EX-ALTN", "盐酸安罗替尼胶囊", "anlotinib",
         "", "", "", "qd d1-14 q3w", "口服", "14", "14", "粒"],
    ]),
    "drug_administrations.csv": (["admin_id", "hospital_id", "admin_date", "drug_code", "drug_name", "generic_name",
                                  "dose_text", "route", "cycle"], [
        ["ZY000123-001", "ZY000123", "2022-01-20", "XL01XA02-KB", "卡铂注射液", "carboplatin", "AUC 5", "静脉滴注", "C1"],
        ["ZY000123-002", "ZY000123", "2022-01-20", "XL01CB01-YTBG", "依托泊苷注射液", "etoposide", "100 mg/m2", "静脉滴注", "C1"],
        ["ZY000456-001", "ZY000456", "2022-03-01", "XL01FF05-ATLZ", "阿替利珠单抗注射液", "atezolizumab", "1200 mg", "静脉滴注", "C1"],
    ]),
    "lab_results.csv": (["result_id", "hospital_id", "report_date", "item_code", "item_name", "result_value", "unit",
                         "ref_range", "abnormal_flag", "specimen"], [
        ["ZY000123-001", "ZY000123", "2022-03-28", "INR", "国际标准化比值", "1.05", "", "0.80-1.20", "", "血浆"],
        ["ZY000123-002", "ZY000123", "2022-03-28", "APTT", "活化部分凝血活酶时间", "32.5", "秒", "25.0-37.0", "", "血浆"],
        ["ZY000456-001", "ZY000456", "2022-05-28", "APTT", "活化部分凝血活酶时间", "41", "s", "25~40", "H", "血浆"],
        ["ZY000456-002", "ZY000456", "2022-05-29", "APTT", "活化部分凝血活酶时间", "39", "s", "", "", "血浆"],
    ]),
    "assessments.csv": (["assess_id", "hospital_id", "assess_date", "scale", "score"], [
        ["ZY000456-001", "ZY000456", "2022-05-28", "ECOG", "1"],
    ]),
    "imaging.csv": (["exam_id", "hospital_id", "exam_date", "exam_name", "target_lesion_sum_mm", "response", "criteria"], [
        ["ZY000123-001", "ZY000123", "2022-01-15", "胸腹部增强CT", "45", "", "RECIST 1.1"],
        ["ZY000123-002", "ZY000123", "2022-05-20", "胸腹部增强CT", "", "PR", "RECIST 1.1"],
        ["ZY000123-003", "ZY000123", "2022-07-15", "胸腹部增强CT", "", "疾病进展", "RECIST 1.1"],
        ["ZY000456-001", "ZY000456", "2022-08-01", "胸腹部增强CT", "", "partial response", "RECIST 1.1"],
    ]),
    "adverse_events.csv": (["ae_id", "hospital_id", "onset_date", "end_date", "ae_term", "ctcae_term", "grade",
                            "related_drug"], [
        ["ZY000123-001", "ZY000123", "2022-04-10", "", "高血压", "Hypertension", "2", "安罗替尼"],
        ["ZY000456-001", "ZY000456", "2022-06-20", "2022-06-25", "咯血", "Bronchopulmonary hemorrhage", "3", "安罗替尼"],
    ]),
    "followup.csv": (["fu_id", "hospital_id", "followup_date", "status", "death_date", "note"], [
        ["ZY000123-001", "ZY000123", "2022-12-31", "存活", "", ""],
        ["ZY000456-001", "ZY000456", "2022-09-01", "存活", "", ""],
        ["ZY000456-002", "ZY000456", "2022-09-15", "死亡", "2022-09-15", ""],
    ]),
}

# broken rows, one per file; the quarantine reason category each must give
BROKEN: dict[str, list[list[str]]] = {
    "lab_results.csv": [["ZY000123-009", "ZY000123", "2022-04-28", "INR", "国际标准化比值", "见备注", "", "0.80-1.20",
                         "", "血浆"]],
    "drug_orders.csv": [["ZY000123-009", "ZY000123", "2022-05-01", "2022-05-01", "X", "某某胶囊", "", "", "", "",
                         "1 片 qd", "口服", "7", "7", "片"]],
    "diagnoses.csv": [["ZY000123-009", "ZY000123", "2022-13-45", "C34.901", "小细胞肺癌", "病理诊断"]],
    "imaging.csv": [["ZY000999-001", "ZY000999", "2022-05-20", "胸腹部增强CT", "", "PR", "RECIST 1.1"]],
}
BROKEN_REASONS = {"lab_results.csv": "not a number", "drug_orders.csv": "unknown local code",
                  "diagnoses.csv": "unparseable date", "imaging.csv": "unresolved reference"}

EXPECTED = {"person": 3, "condition_occurrence": 3 + 2, "drug_exposure": 3 + 3, "measurement": 3 + 4 + 1 + 1 + 2,
            "observation": 3, "death": 1, "visit_occurrence": 2}


def write(folder: Path, encoding: str = "utf-8-sig", broken: bool = False,
          encodings: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (header, rows) in FILES.items():
        rows = rows + (BROKEN.get(name, []) if broken else [])
        enc = (encodings or {}).get(name, encoding)
        with (folder / name).open("w", encoding=enc, newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(rows)
    return folder


def write_xlsx(path: Path) -> Path:
    import openpyxl

    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, (header, rows) in FILES.items():
        ws = wb.create_sheet(name.removesuffix(".csv"))
        ws.append(header)
        for r in rows:
            ws.append(r)
    wb.save(path)
    return path
