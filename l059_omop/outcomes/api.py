"""``compute_outcomes``: cohort + CDM -> tables, figures and report (what ``l059-omop outcomes`` runs)."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from sqlalchemy.engine import Engine

from l059_omop import __version__
from l059_omop.outcomes import analysis as an
from l059_omop.outcomes import plots, report
from l059_omop.outcomes.extract import Extract, extract
from l059_omop.outcomes.km import CI_METHODS, DAYS_PER_MONTH
from l059_omop.outcomes.suppress import suppress

PLOT_SUBGROUPS = ("dose", "agent", "ecog")
MAX_PLOT_LEVELS = 8


@dataclass
class OutcomeResults:
    """Exact (unsuppressed) tables for use at the site; ``files`` lists what was written (suppressed)."""

    cohort_id: int
    data_cutoff: dt.date
    ci_method: str
    min_cell_count: int
    persons: pd.DataFrame
    survival_summary: pd.DataFrame
    km: dict[str, pd.DataFrame]
    landmarks: pd.DataFrame
    follow_up: pd.DataFrame
    logrank: pd.DataFrame
    cox: pd.DataFrame
    response: pd.DataFrame
    safety: pd.DataFrame
    table1: pd.DataFrame
    attrition: pd.DataFrame
    attrition_recorded: bool = False
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def _attrition_frame(ex: Extract, n: int) -> pd.DataFrame:
    if ex.attrition is not None:
        return ex.attrition[["rule_sequence", "rule_name", "persons_remaining", "persons_excluded"]].copy()
    return pd.DataFrame([{"rule_sequence": 0, "rule_name": "cohort (no attrition recorded)", "persons_remaining": n,
                          "persons_excluded": 0}])


def compute_outcomes(engine: Engine, out_dir: Path | str | None = None, cohort_id: int = 1059,
                     cdm_schema: str = "cdm", results_schema: str = "results", cohort_table: str = "cohort",
                     data_cutoff: dt.date | None = None, ci_method: str = "log", min_cell_count: int = 5,
                     subgroups: Mapping[str, str] = an.DEFAULT_SUBGROUPS,
                     cox_covariates: Sequence[str] = an.DEFAULT_COX, plots_and_report: bool = True,
                     extra_sections: Sequence[tuple[str, str]] = ()) -> OutcomeResults:
    """Run the outcome extracts and statistics for ``cohort_id``; write CSV/PNG/HTML into ``out_dir``."""
    if ci_method not in CI_METHODS:
        from l059_omop.errors import BadInput

        raise BadInput(f"--ci-method must be one of {', '.join(CI_METHODS)}, not {ci_method!r}")
    clock: dict[str, float] = {}
    t0 = time.perf_counter()
    ex = extract(engine, cohort_id, cdm_schema, results_schema, cohort_table, data_cutoff)
    clock["extract"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = an.analyse(ex.persons, ex.adverse_events, ci_method=ci_method, subgroups=subgroups,
                     cox_covariates=cox_covariates, female_ids=ex.concept_sets.get("gender_female", ()),
                     male_ids=ex.concept_sets.get("gender_male", ()))
    clock["statistics"] = time.perf_counter() - t0
    out = OutcomeResults(
        cohort_id=cohort_id, data_cutoff=ex.data_cutoff, ci_method=ci_method, min_cell_count=min_cell_count,
        persons=res.persons, survival_summary=res.survival_summary, km=res.km_tables, landmarks=res.landmarks,
        follow_up=res.follow_up, logrank=res.logrank, cox=res.cox, response=res.response, safety=res.safety,
        table1=res.table1, attrition=_attrition_frame(ex, len(res.persons)),
        attrition_recorded=ex.attrition is not None, notes=res.notes, seconds=clock)
    if out_dir is not None:
        t0 = time.perf_counter()
        write_outputs(out, res, ex, Path(out_dir), subgroups, plots_and_report, extra_sections)
        clock["write"] = time.perf_counter() - t0
    return out


def suppressed_tables(out: OutcomeResults, curves_tables: Mapping[str, pd.DataFrame] | None = None
                      ) -> dict[str, pd.DataFrame]:
    """The tables as they may leave the site: counts below the minimum cell count as ``<N``."""
    m = out.min_cell_count

    def pct(df: pd.DataFrame) -> pd.DataFrame:
        cols = [c for c in df.columns if "pct" in c or c == "percent"]
        return df.assign(**{c: pd.to_numeric(df[c], errors="coerce").round(2) for c in cols})

    t = {
        "survival_summary": suppress(out.survival_summary, ["n", "events"], m),
        "landmarks": suppress(out.landmarks, ["at_risk"], m),
        "follow_up": suppress(out.follow_up, ["n"], m),
        "logrank": suppress(out.logrank, ["n"], m),
        "cox": suppress(out.cox, ["n", "events"], m),
        "response": suppress(pct(out.response), ["n", "denominator"], m, {"n": ["percent"]}),
        "safety": suppress(pct(out.safety), ["any_grade_n", "grade3plus_n"], m,
                           {"any_grade_n": ["any_grade_pct"], "grade3plus_n": ["grade3plus_pct"]}),
        "table1": suppress(pct(out.table1), ["n"], m, {"n": ["percent"]}),
        "attrition": suppress(out.attrition, ["persons_remaining", "persons_excluded"], m),
    }
    for ep, km in (curves_tables or out.km).items():
        t[f"km_{ep}"] = suppress(km, ["at_risk", "events", "censored"], m)
    return t


def _methods_html(out: OutcomeResults) -> str:
    items = [
        f"Time zero: the person's first cohort_start_date in cohort {out.cohort_id}; nothing after the data "
        f"cut-off {out.data_cutoff.isoformat()} counts.",
        "OS: death; otherwise censored at the end of the observation period (capped at the cut-off).",
        "PFS: the first progressive-disease assessment after index, or death, whichever first; otherwise censored "
        "at the last tumour assessment after index.",
        "Best overall response (RECIST 1.1) up to and including the first PD; SD counts only >= 42 days after "
        "index. ORR = CR + PR, DCR = CR + PR + SD over all persons, with exact (Clopper-Pearson) 95% CIs.",
        "Adverse events: conditions with a CTCAE grade from index to 30 days after the last anlotinib exposure; "
        "worst grade per person and term.",
        f"Kaplan-Meier medians with 95% CIs by the {out.ci_method} method (Greenwood variance), R survival's "
        "rule for a flat stretch at 0.5; 6 and 12 months = 182.6 and 365.25 days; median follow-up by reverse "
        "Kaplan-Meier; log-rank tests; Cox proportional hazards with Efron ties on complete cases.",
        f"Counts below {out.min_cell_count} are shown as <{out.min_cell_count}.",
    ]
    return "<ul>" + "".join(f"<li>{report.html.escape(i)}</li>" for i in items) + "</ul>"


def numbers_at_risk(res: an.Analysis, step_months: int = 3) -> pd.DataFrame:
    """Persons at risk every ``step_months`` months, per endpoint and subgroup (the rows under the plots)."""
    rows = []
    for (ep, label), curve in res.curves.items():
        tmax = float(curve.table["time"].max()) if len(curve.table) else 0.0
        months = list(range(0, int(tmax / DAYS_PER_MONTH) + step_months + 1, step_months))
        at = curve.at_risk([mo * DAYS_PER_MONTH for mo in months])
        rows += [{"endpoint": ep, "subgroup": label, "month": mo, "day": round(mo * DAYS_PER_MONTH, 2),
                  "at_risk": int(a)} for mo, a in zip(months, at, strict=True)]
    return pd.DataFrame(rows, columns=["endpoint", "subgroup", "month", "day", "at_risk"])


def _subgroup_curves(res: an.Analysis, endpoint: str, name: str):
    prefix = f"{name}="
    return [(label[len(prefix):], curve) for (ep, label), curve in res.curves.items()
            if ep == endpoint and label.startswith(prefix)]


def write_outputs(out: OutcomeResults, res: an.Analysis, ex: Extract, out_dir: Path,
                  subgroups: Mapping[str, str] = an.DEFAULT_SUBGROUPS, plots_and_report: bool = True,
                  extra_sections: Sequence[tuple[str, str]] = ()) -> None:
    """Write the tables, plots and report.html; ``extra_sections`` (heading, HTML) are appended to the
    report (e.g. the data-quality section of ``l059_omop.dq.html_fragment``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = suppressed_tables(out)
    m = out.min_cell_count
    written: list[Path] = []

    def csv(name: str, df: pd.DataFrame) -> None:
        path = out_dir / f"{name}.csv"
        df.to_csv(path, index=False, float_format="%.6g")
        written.append(path)

    for name in ("survival_summary", "landmarks", "follow_up", "logrank", "cox", "response", "safety", "table1",
                 "attrition"):
        csv(name, tables[name])
    for ep in out.km:
        csv(f"km_{ep}", tables[f"km_{ep}"])
    csv("numbers_at_risk", suppress(numbers_at_risk(res), ["at_risk"], m))
    sub_rows = []
    for (ep, label), curve in res.curves.items():
        if label == "all":
            continue
        t = curve.table[an.KM_COLUMNS].copy()
        t.insert(0, "subgroup", label)
        t.insert(0, "endpoint", ep)
        sub_rows.append(t)
    if sub_rows:
        csv("km_subgroups", suppress(pd.concat(sub_rows, ignore_index=True), ["at_risk", "events", "censored"], m))
    t1 = out_dir / "table1.html"
    t1.write_text(report.build_report("Table 1. Baseline characteristics", {"cohort": out.cohort_id},
                                      [("Baseline characteristics", report.table_html(tables["table1"], "{:.1f}"))]),
                  encoding="utf-8")
    written.append(t1)
    run = {"cohort_id": out.cohort_id, "data_cutoff": out.data_cutoff.isoformat(), "ci_method": out.ci_method,
           "min_cell_count": m, "software_version": __version__, "parameters": ex.parameters,
           "concept_sets": {k: len(v) for k, v in ex.concept_sets.items()}, "notes": out.notes,
           "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    (out_dir / "run.json").write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    written.append(out_dir / "run.json")
    if plots_and_report:
        written += _figures_and_report(out, res, out_dir, tables, subgroups, run, extra_sections)
    out.files = written


def _figures_and_report(out: OutcomeResults, res: an.Analysis, out_dir: Path, tables: dict[str, pd.DataFrame],
                        subgroups: Mapping[str, str], run: dict,
                        extra_sections: Sequence[tuple[str, str]] = ()) -> list[Path]:
    m = out.min_cell_count
    written: list[Path] = []
    images: list[tuple[str, bytes]] = []

    def save(name: str, png: bytes, caption: str) -> None:
        path = out_dir / name
        path.write_bytes(png)
        written.append(path)
        images.append((caption, png))

    save("attrition.png", plots.attrition_diagram(out.attrition if out.attrition_recorded else None, len(out.persons),
                                                  m), "Attrition (CONSORT-style)")
    km_images = []
    for ep in an.ENDPOINTS:
        if (ep, "all") not in res.curves:
            continue
        title = plots.ENDPOINT_TITLES.get(ep, ep)
        png = plots.km_plot([("all", res.curves[(ep, "all")])], f"{title} ({out.ci_method} 95% CI)", m)
        save(f"km_{ep}.png", png, title)
        km_images.append((title, png))
        for name in PLOT_SUBGROUPS:
            if name not in subgroups:
                continue
            curves = _subgroup_curves(res, ep, name)
            if 2 <= len(curves) <= MAX_PLOT_LEVELS:
                png = plots.km_plot(curves, f"{title} by {name}", m)
                save(f"km_{ep}_by_{name}.png", png, f"{title} by {name}")
                km_images.append((f"{title} by {name}", png))

    def months(df: pd.DataFrame) -> pd.DataFrame:
        d = df.copy()
        for c in ("median_days", "median_lower_days", "median_upper_days"):
            if c in d:
                d[c.replace("_days", "_months")] = pd.to_numeric(d[c], errors="coerce") / DAYS_PER_MONTH
        return d

    sections = [
        ("Attrition", report.img_tag(images[0][1], "attrition diagram") + report.table_html(tables["attrition"])),
        ("Table 1. Baseline characteristics", report.table_html(tables["table1"], "{:.1f}")),
        ("Survival summary (days; months = days / 30.4375)", report.table_html(months(tables["survival_summary"]))),
        ("Median follow-up", report.table_html(tables["follow_up"], "{:.1f}")),
        ("Kaplan-Meier curves", "".join(report.img_tag(png, cap) for cap, png in km_images)),
        ("Landmark survival", report.table_html(tables["landmarks"])),
        ("Log-rank tests", report.table_html(tables["logrank"], "{:.4g}")),
        ("Cox proportional hazards (Efron ties)", report.table_html(tables["cox"], "{:.4g}")),
        ("Best overall response (RECIST 1.1)", report.table_html(tables["response"], "{:.1f}")),
        ("Adverse events (worst grade per person and term)", report.table_html(tables["safety"], "{:.1f}")),
    ]
    sections.insert(0, ("Methods", _methods_html(out)))
    sections.extend(extra_sections)
    if out.notes:
        sections.append(("Notes", "<ul>" + "".join(f"<li>{report.html.escape(n)}</li>" for n in out.notes)
                         + "</ul>"))
    meta = {"cohort": out.cohort_id, "persons analysed": tables["table1"].iloc[0]["n"],
            "data cut-off": run["data_cutoff"], "confidence intervals": f"95%, {out.ci_method} (survival)",
            "minimum cell count": m, "software": f"l059-omop {run['software_version']}",
            "generated": run["generated_at"]}
    page = report.build_report(f"Outcomes of cohort {out.cohort_id}", meta, sections)
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    written.append(path)
    return written
