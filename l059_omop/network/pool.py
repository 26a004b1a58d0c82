"""Pool aggregate results of several sites: attrition and counts summed, Kaplan-Meier from the summed life
tables, inverse-variance meta-analysis of hazard ratios, plots and a self-contained report.

A value suppressed at a site is not guessed: the pooled cell stays empty, and ``suppressed_at`` names
the column, the sites that suppressed it and the sum over the others (``complete`` is false). Every
site's suppression log is carried into ``suppressed_cells_by_site.csv`` with the site's name.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from l059_omop import __version__
from l059_omop.errors import BadInput
from l059_omop.network import lifetable, meta
from l059_omop.network.results import ResultSet, read_results

LANDMARKS = {"rate_6m": 182.625, "rate_12m": 365.25}


@dataclass
class Pooled:
    sites: list[str]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, bytes] = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)


def _check_sites(results: list[ResultSet]) -> None:
    if not results:
        raise BadInput("no results to pool")
    names = [r.site for r in results]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BadInput(f"site(s) given more than once: {', '.join(dupes)}")
    studies = {r.manifest.get("study_id") for r in results}
    if len(studies) > 1:
        raise BadInput(f"results from different studies: {', '.join(sorted(map(str, studies)))}")
    defs = {r.manifest.get("definition_sha256") for r in results}
    if len(defs) > 1:
        detail = ", ".join(f"{r.site}: {str(r.manifest.get('definition_sha256'))[:12]}" for r in results)
        raise BadInput(f"results from different study definitions cannot be pooled ({detail})")


def _sum_cells(results: list[ResultSet], table: str, keys: list[str], value_cols: list[str]) -> pd.DataFrame:
    """Sum count columns over sites by key; record which sites suppressed (NA) a value."""
    frames = []
    for r in results:
        t = r.table(table)
        if t.empty:
            continue
        t = t[keys + value_cols].copy()
        t["site"] = r.site
        frames.append(t)
    if not frames:
        return pd.DataFrame(columns=[*keys, *value_cols, "sites", "suppressed_at", "complete"])
    allf = pd.concat(frames, ignore_index=True)
    rows = []
    for key, g in allf.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(keys, key, strict=True))
        missing = []
        for c in value_cols:
            v = pd.to_numeric(g[c], errors="coerce")
            hidden = sorted(g.loc[v.isna(), "site"])
            # a sum with a site's value missing is not the total: left empty, the partial sum named
            row[c] = pd.NA if hidden else int(v.sum())
            if hidden:
                missing.append(f"{c} at {', '.join(hidden)}"
                               + (f" (sum of the other sites {int(v.sum())})" if v.notna().any() else ""))
        row["sites"] = ";".join(g["site"])
        row["suppressed_at"] = "; ".join(missing)
        row["complete"] = not missing
        rows.append(row)
    out = pd.DataFrame(rows)
    for c in value_cols:
        out[c] = out[c].astype("Int64")
    return out


def _km_summary(site: str, endpoint: str, subgroup: str, lt: pd.DataFrame, ci_method: str, exact: bool) -> dict:
    """Median (R's quantile rule, also for the CI) and landmark rates, by the outcomes module's estimator,
    so pooled and single-site reports agree."""
    from l059_omop.outcomes.km import kaplan_meier_from_table

    row = {"site": site, "endpoint": endpoint, "subgroup": subgroup,
           "n": int(lt["at_risk"].iloc[0]) if len(lt) else 0, "events": int(lt["events"].sum()) if len(lt) else 0}
    if len(lt):
        km = kaplan_meier_from_table(lt[lifetable.COLUMNS], ci_method)
        med, lo, hi = km.median()
        at = km.at(list(LANDMARKS.values()))
    else:
        med = lo = hi = np.nan
        at = pd.DataFrame({"survival": [np.nan] * 2, "lower": [np.nan] * 2, "upper": [np.nan] * 2})
    row.update(median_days=med, median_lower_days=lo, median_upper_days=hi)
    for i, name in enumerate(LANDMARKS):
        row[name], row[f"{name}_lower"], row[f"{name}_upper"] = (float(at["survival"].iloc[i]),
                                                                 float(at["lower"].iloc[i]),
                                                                 float(at["upper"].iloc[i]))
    row["ci_method"] = ci_method
    row["exact"] = exact
    return row


def pool_results(results: list[ResultSet], ci_method: str = "log", figures: bool = True) -> Pooled:
    _check_sites(results)
    sites = [r.site for r in results]
    out = Pooled(sites)
    t = out.tables
    t["pooled_attrition.csv"] = _sum_cells(results, "attrition.csv", ["rule_sequence", "rule_name"],
                                           ["persons_remaining", "persons_excluded", "fail_alone"])
    t["pooled_counts.csv"] = _sum_cells(results, "counts.csv", ["item"], ["value"])
    resp = _sum_cells(results, "response.csv", ["subgroup", "category"], ["n"])
    t["pooled_response.csv"] = _response_rates(resp)
    t["pooled_safety.csv"] = _sum_cells(results, "safety.csv", ["term"], ["n_any", "n_grade3plus"])

    # Kaplan-Meier: per site and pooled, from the life tables
    km_rows, summary_rows = [], []
    keys = sorted({(ep, sg) for r in results for ep, sg in
                   r.table("km_life_table.csv")[["endpoint", "subgroup"]].itertuples(index=False)},
                  key=lambda x: (x[0], x[1] != "all", x[1]))
    for ep, sg in keys:
        lts, contributing = [], []
        for r in results:
            lt = r.table("km_life_table.csv")
            lt = lt[(lt["endpoint"] == ep) & (lt["subgroup"] == sg)]
            if lt.empty:
                continue
            exact = bool(r.manifest.get("km_exact", False))
            km = lifetable.kaplan_meier(lt, ci_method)
            km_rows.append(km.assign(site=r.site, endpoint=ep, subgroup=sg))
            summary_rows.append(_km_summary(r.site, ep, sg, lt, ci_method, exact))
            lts.append(lt)
            contributing.append(r)
        missing = [s for s in sites if s not in {r.site for r in contributing}]
        exact = all(bool(r.manifest.get("km_exact", False)) for r in contributing)
        pooled = lifetable.kaplan_meier(lifetable.pool(lts), ci_method)
        km_rows.append(pooled.assign(site="pooled", endpoint=ep, subgroup=sg))
        row = _km_summary("pooled", ep, sg, pooled[lifetable.COLUMNS], ci_method, exact)
        row["sites"] = ";".join(r.site for r in contributing)
        row["missing_at"] = ";".join(missing)
        summary_rows.append(row)
    km_cols = ["site", "endpoint", "subgroup", *lifetable.COLUMNS, "survival", "std_err", "lower", "upper"]
    kms = pd.concat(km_rows, ignore_index=True)[km_cols] if km_rows else pd.DataFrame(columns=km_cols)
    t["pooled_km.csv"] = kms[kms["site"] == "pooled"].drop(columns="site").reset_index(drop=True)
    t["site_km.csv"] = kms[kms["site"] != "pooled"].reset_index(drop=True)
    t["km_summary.csv"] = pd.DataFrame(summary_rows)

    # hazard ratios: per site, then fixed and random effects
    hr_rows, meta_rows = [], []
    for r in results:
        cox = r.table("cox.csv")
        for row in cox.itertuples(index=False):
            if pd.isna(row.coef) or pd.isna(row.se):
                continue
            z = meta.Z95
            hr_rows.append({"site": r.site, "endpoint": row.endpoint, "term": row.term, "coef": float(row.coef),
                            "se": float(row.se), "hr": float(np.exp(row.coef)),
                            "lower": float(np.exp(row.coef - z * row.se)), "upper": float(np.exp(row.coef + z * row.se))})
    hrs = pd.DataFrame(hr_rows, columns=["site", "endpoint", "term", "coef", "se", "hr", "lower", "upper"])
    t["site_hazard_ratios.csv"] = hrs
    for (ep, term), g in hrs.groupby(["endpoint", "term"], sort=True):
        res = meta.inverse_variance(g["coef"].to_numpy(), (g["se"] ** 2).to_numpy())
        d = res.as_dict()
        meta_rows.append({"endpoint": ep, "term": term, "sites": ";".join(g["site"]),
                          "missing_at": ";".join(s for s in sites if s not in set(g["site"])), **d})
    t["meta_analysis.csv"] = pd.DataFrame(meta_rows)

    supp = []
    for r in results:
        s = r.table("suppressed_cells.csv")
        if len(s):
            supp.append(s.assign(site=r.site)[["site", "table", "row", "column", "reason"]])
    t["suppressed_cells_by_site.csv"] = (pd.concat(supp, ignore_index=True) if supp
                                 else pd.DataFrame(columns=["site", "table", "row", "column", "reason"]))
    out.manifest = {
        "study_id": results[0].manifest.get("study_id"),
        "software": {"name": "l059-omop", "version": __version__},
        "definition_sha256": results[0].manifest.get("definition_sha256"),
        "ci_method": ci_method,
        "sites": [{"site": r.site, "dialect": r.manifest.get("dialect"), "min_cell_count": r.min_cell_count,
                   "suppression": r.manifest.get("suppression"), "km_exact": r.manifest.get("km_exact"),
                   "package_sha256": r.manifest.get("package_sha256"),
                   "software_version": r.manifest.get("software", {}).get("version"),
                   "notes": r.manifest.get("notes", [])} for r in results],
        "km_exact": all(bool(r.manifest.get("km_exact")) for r in results),
        "suppressed_cells": int(len(t["suppressed_cells_by_site.csv"])),
    }
    if figures:
        out.figures = _figures(t["site_km.csv"], t["pooled_km.csv"], hrs, t["meta_analysis.csv"])
    return out


def _response_rates(resp: pd.DataFrame) -> pd.DataFrame:
    from l059_omop.outcomes.km import clopper_pearson

    resp = resp.copy()
    rate, lo, hi = [], [], []
    for row in resp.itertuples(index=False):
        n_all = resp[(resp["subgroup"] == row.subgroup) & (resp["category"] == "N")]["n"]
        total = n_all.iloc[0] if len(n_all) else pd.NA
        if row.category in ("ORR", "DCR") and pd.notna(row.n) and pd.notna(total) and total > 0 and row.complete:
            a, b = clopper_pearson(int(row.n), int(total))
            rate.append(int(row.n) / int(total))
            lo.append(a)
            hi.append(b)
        else:
            rate.append(np.nan)
            lo.append(np.nan)
            hi.append(np.nan)
    resp["rate"], resp["lower"], resp["upper"] = rate, lo, hi
    return resp


# ---------------------------------------------------------------- plots and report

def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _figures(site_km: pd.DataFrame, pooled_km: pd.DataFrame, hrs: pd.DataFrame, meta_df: pd.DataFrame
             ) -> dict[str, bytes]:
    from matplotlib.figure import Figure  # no pyplot: no global backend switch, nothing left open

    figs: dict[str, bytes] = {}
    for ep in sorted(set(pooled_km["endpoint"])):
        fig = Figure(figsize=(7, 4.5))
        ax = fig.subplots()
        for site, g in site_km[(site_km["endpoint"] == ep) & (site_km["subgroup"] == "all")].groupby("site"):
            ax.step(np.r_[0, g["time"] / 30.4375], np.r_[1, g["survival"]], where="post", lw=1, alpha=0.8,
                    label=f"{site} (n={int(g['at_risk'].iloc[0])})")
        p = pooled_km[(pooled_km["endpoint"] == ep) & (pooled_km["subgroup"] == "all")]
        if len(p):
            x = np.r_[0, p["time"] / 30.4375]
            ax.step(x, np.r_[1, p["survival"]], where="post", lw=2.5, color="black",
                    label=f"pooled (n={int(p['at_risk'].iloc[0])})")
            ax.fill_between(x, np.r_[1, p["lower"].fillna(0)], np.r_[1, p["upper"].fillna(0)], step="post",
                            color="grey", alpha=0.2)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("months since index")
        ax.set_ylabel(f"{ep.upper()} probability")
        ax.set_title(f"{ep.upper()}: sites and pooled Kaplan-Meier")
        ax.legend(fontsize=8)
        figs[f"km_{ep}.png"] = _png(fig)
    for ep in sorted(set(hrs["endpoint"])):
        g = hrs[hrs["endpoint"] == ep]
        m = meta_df[meta_df["endpoint"] == ep] if len(meta_df) else meta_df
        labels, est, lo, hi, kinds = [], [], [], [], []
        for term in sorted(set(g["term"])):
            for row in g[g["term"] == term].itertuples(index=False):
                labels.append(f"{term}: {row.site}")
                est.append(row.hr), lo.append(row.lower), hi.append(row.upper), kinds.append("site")
            mm = m[m["term"] == term]
            if len(mm):
                r = mm.iloc[0]
                for which, name in (("fe", "fixed effect"), ("re", f"random effects (I²={100 * r['i2']:.0f}%)")):
                    labels.append(f"{term}: {name}")
                    est.append(r[f"{which}_hr"]), lo.append(r[f"{which}_lower"]), hi.append(r[f"{which}_upper"])
                    kinds.append(which)
        fig = Figure(figsize=(7, 0.35 * len(labels) + 1.2))
        ax = fig.subplots()
        y = np.arange(len(labels))[::-1]
        for yi, e, a, b, k in zip(y, est, lo, hi, kinds, strict=True):
            ax.plot([a, b], [yi, yi], color="black" if k != "site" else "tab:blue", lw=1.5)
            ax.plot([e], [yi], marker="D" if k != "site" else "s", color="black" if k != "site" else "tab:blue")
        ax.axvline(1.0, color="grey", ls="--", lw=1)
        ax.set_xscale("log")
        from matplotlib.ticker import NullFormatter, ScalarFormatter

        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=8)
        ax.set_xlabel("hazard ratio (95% CI, log scale)")
        ax.set_title(f"{ep.upper()}: Cox hazard ratios by site, fixed and random effects")
        figs[f"forest_{ep}.png"] = _png(fig)
    return figs


def _table_html(df: pd.DataFrame, max_rows: int = 60) -> str:
    if df is None or df.empty:
        return "<p><em>none</em></p>"
    shown = df.head(max_rows)
    body = shown.to_html(index=False, na_rep="suppressed", float_format=lambda v: f"{v:.4g}", border=0,
                         classes="t", escape=True)
    if len(df) > max_rows:
        body += f"<p>{len(df) - max_rows} more rows in the CSV file.</p>"
    return body


def report_html(p: Pooled) -> str:
    t = p.tables
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             "<title>ALTER-L059 network study: pooled results</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table.t{border-collapse:collapse;font-size:13px;margin:.5em 0}"
             "table.t td,table.t th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
             "img{max-width:100%}</style></head><body>",
             "<h1>ALTER-L059 network study: pooled results</h1>"]
    exact = "exact (no suppression)" if p.manifest.get("km_exact") else \
        "approximate where sites coarsened their life tables for small-cell suppression"
    parts.append(f"<p>Sites: {html.escape(', '.join(p.sites))}. l059-omop {html.escape(__version__)}. "
                 f"Pooled Kaplan-Meier from summed life tables: {exact}. CI method: "
                 f"{html.escape(str(p.manifest.get('ci_method')))}. Cells marked <em>suppressed</em> were not "
                 f"published by every site; see the list at the end.</p>")
    site_rows = pd.DataFrame([{k: v for k, v in s.items() if k != "notes"} for s in p.manifest["sites"]])
    parts += ["<h2>Sites</h2>", _table_html(site_rows)]
    parts += ["<h2>Attrition (summed)</h2>", _table_html(t["pooled_attrition.csv"])]
    parts += ["<h2>Survival</h2>", _table_html(t["km_summary.csv"])]
    for name, data in sorted(p.figures.items()):
        if name.startswith("km_"):
            parts.append(f"<img alt='{html.escape(name)}' src='data:image/png;base64,{base64.b64encode(data).decode()}'>")
    parts += ["<h2>Hazard ratios: meta-analysis</h2>", _table_html(t["meta_analysis.csv"])]
    for name, data in sorted(p.figures.items()):
        if name.startswith("forest_"):
            parts.append(f"<img alt='{html.escape(name)}' src='data:image/png;base64,{base64.b64encode(data).decode()}'>")
    parts += ["<h2>Response</h2>", _table_html(t["pooled_response.csv"])]
    parts += ["<h2>Safety</h2>", _table_html(t["pooled_safety.csv"])]
    parts += ["<h2>Suppressed or withheld cells</h2>", _table_html(t["suppressed_cells_by_site.csv"], 200)]
    notes = [f"{s['site']}: {n}" for s in p.manifest["sites"] for n in s.get("notes", [])]
    if notes:
        parts.append("<h2>Site notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_pooled(p: Pooled, out: Path) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, df in p.tables.items():
        path = out / name
        df.to_csv(path, index=False, lineterminator="\n", float_format="%.10g")
        written.append(path)
    for name, data in p.figures.items():
        (out / name).write_bytes(data)
        written.append(out / name)
    (out / "pool_manifest.json").write_text(json.dumps(p.manifest, indent=2, default=str) + "\n", encoding="utf-8")
    (out / "report.html").write_text(report_html(p), encoding="utf-8")
    return [*written, out / "pool_manifest.json", out / "report.html"]


def pool_files(paths: list[Path], out: Path, ci_method: str = "log") -> Pooled:
    results = [read_results(Path(p)) for p in paths]
    pooled = pool_results(results, ci_method)
    write_pooled(pooled, out)
    return pooled
