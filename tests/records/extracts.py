"""Small hand-made hospital extracts in the layout of mappings/records/synth_site.yaml (for the tests).

Three patients (P1 alive, P2 dead, P3 without events), every source file, and optionally broken rows:
an unparseable date, an unknown local drug name, text in a number column, a row of an unknown patient.
"""

from __future__ import annotations

import csv
from pathlib import Path

HOSPITAL_IDS = ("ZY000123", "ZY000456", "ZY000789")
NAMES = ("张伟", "李娜", "王芳")

FILES: dict[str, tuple[list[str], list[list[str]]]] = {
    "patients.csv": (["病案号", "姓名", "性别", "出生日期", "联系电话"], [
        ["ZY000123", "张伟", "男", "1958-03-14", "13800000001"],
        ["ZY000456", "李娜", "女", "1961/11/02", "13800000002"],
        ["ZY000789", "王芳", "女", "1970年5月9日", "13800000003"],
    ]),
    "diagnoses.csv": (["病案号", "诊断日期", "诊断编码", "诊断名称"], [
        ["ZY000123", "2022-01-10", "C34.901", "小细胞肺癌"],
        ["ZY000456", "2022-02-15", "M80410/3 C34.1", "肺上叶小细胞癌"],
        ["ZY000456", "2020-06-01", "M06.900", "类风湿关节炎"],
    ]),
    "staging.csv": (["病案号", "分期", "分期日期"], [
        ["ZY000123", "广泛期", "2022-01-12"],
        ["ZY000456", "局限期", "2021-03-01"],
        ["ZY000456", "广泛期", "2022-02-20"],
    ]),
    "drug_orders.csv": (["病案号", "医嘱号", "药品编码", "药品名称", "用法用量", "给药途径", "开始日期", "结束日期"], [
        ["ZY000123", "YZ1001", "XL01XA02-KB", "卡铂注射液", "AUC 5 ivgtt d1", "静脉滴注", "2022-01-20", ""],
        ["ZY000123", "YZ1002", "XL01CB01-YTBG", "依托泊苷注射液", "100 mg/m2 ivgtt d1-3", "静脉滴注", "2022-01-20", "2022-01-22"],
        ["ZY000123", "YZ1003", "XL01EX-ALTN12", "安罗替尼胶囊 12mg", "12 mg qd d1-14 q3w", "口服", "2022-04-01", ""],
        ["ZY000123", "YZ1004", "XL01EX-ALTN", "盐酸安罗替尼胶囊", "10mg 每日一次 d1-14 q3w", "口服", "2022-04-22", ""],
        ["ZY000456", "YZ2001", "XL01FF05-ATLZ", "阿替利珠单抗注射液", "1200 mg ivgtt d1 q3w", "静脉滴注", "2022-03-01", ""],
        ["ZY000456", "YZ2002", "XL01EX-ALTN", "安罗替尼", "8 mg qd d1-14 q21d", "口服", "2022-06-01", ""],
    ]),
    "labs.csv": (["病案号", "检验单号", "项目代码", "项目名称", "结果", "单位", "参考范围", "报告日期"], [
        ["ZY000123", "JY01", "6301-6", "国际标准化比值", "1.05", "INR", "0.8-1.2", "2022-03-28"],
        ["ZY000123", "JY01", "14979-9", "活化部分凝血活酶时间", "32.5", "秒", "25.0-37.0", "2022-03-28"],
        ["ZY000456", "JY02", "14979-9", "活化部分凝血活酶时间", "41", "s", "25~40", "2022-05-28"],
        ["ZY000456", "JY02", "89247-1", "ECOG评分", "1", "", "", "2022-05-28"],
        ["ZY000456", "JY03", "9999-9", "未知项目", "7", "", "", "2022-05-29"],
    ]),
    "imaging.csv": (["病案号", "检查号", "检查日期", "疗效评价", "靶病灶直径总和", "单位"], [
        ["ZY000123", "CT01", "2022-01-15", "", "4.5", "cm"],
        ["ZY000123", "CT02", "2022-05-20", "PR", "", ""],
        ["ZY000123", "CT03", "2022-07-15", "疾病进展", "", ""],
        ["ZY000456", "CT04", "2022-08-01", "部分缓解", "", ""],
    ]),
    "adverse_events.csv": (["病案号", "不良事件", "CTCAE分级", "发生日期", "结束日期"], [
        ["ZY000123", "高血压", "2", "2022-04-10", ""],
        ["ZY000456", "咯血", "3", "2022-06-20", "2022-06-25"],
    ]),
    "followup.csv": (["病案号", "随访日期", "生存状态", "死亡日期"], [
        ["ZY000123", "2022-12-31", "存活", ""],
        ["ZY000456", "2022-09-01", "死亡", "2022-09-15"],
    ]),
}

# broken rows: (file, row) -> reason category the quarantine must give
BROKEN: dict[str, list[list[str]]] = {
    "labs.csv": [["ZY000123", "JY09", "6301-6", "国际标准化比值", "见备注", "INR", "0.8-1.2", "2022-04-28"]],
    "drug_orders.csv": [["ZY000123", "YZ1099", "X", "某某胶囊", "1 片 qd", "口服", "2022-05-01", ""]],
    "diagnoses.csv": [["ZY000123", "2022-13-45", "C34.901", "小细胞肺癌"]],
    "imaging.csv": [["ZY000999", "CT99", "2022-05-20", "PR", "", ""]],
}
BROKEN_REASONS = {"labs.csv": "not a number", "drug_orders.csv": "unknown local code",
                  "diagnoses.csv": "unparseable date", "imaging.csv": "unresolved reference"}

EXPECTED = {"person": 3, "condition_occurrence": 3 + 2, "drug_exposure": 6, "measurement": 3 + 5 + 1 + 2,
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
