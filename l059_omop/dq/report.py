"""What ``l059-omop dq`` hands over: ``dq_results.csv``, a printed summary, an HTML fragment the study report
embeds, and an exit code a pipeline can act on.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

DQ_FAILED_EXIT_CODE = 3
"""Exit code when a check fails over its threshold (or cannot run) at the ``--fail-on`` level; 0 otherwise.
Distinct from 1 (runtime failure) and 2 (bad usage or input) of DESIGN §2."""

FAIL_ON = {"error": ("error",), "warning": ("error", "warning")}
CATEGORIES = ("Conformance", "Completeness", "Plausibility")
RESULTS_CSV = "dq_results.csv"
HTML_FILE = "dq.html"


def counted_failures(df: pd.DataFrame, fail_on: str = "error") -> pd.DataFrame:
    """Checks that fail (or error) at a failure level ``fail_on`` counts: 'error' counts DQD's fatal and
    convention checks, 'warning' also its characterization checks."""
    if fail_on not in FAIL_ON:
        raise ValueError(f"fail_on must be one of {', '.join(FAIL_ON)}")
    return df[df["status"].isin(["fail", "error"]) & df["failure_level"].isin(FAIL_ON[fail_on])]


def exit_code(df: pd.DataFrame, fail_on: str = "error") -> int:
    """0 when no check fails at the ``fail_on`` level, else ``DQ_FAILED_EXIT_CODE``."""
    return DQ_FAILED_EXIT_CODE if len(counted_failures(df, fail_on)) else 0


def by_category(df: pd.DataFrame) -> pd.DataFrame:
    """Checks run (not 'not_applicable'), passed, failed, errored and not applicable per Kahn category."""
    rows = []
    for cat in [*CATEGORIES, *sorted(set(df["category"]) - set(CATEGORIES))]:
        sub = df[df["category"] == cat]
        counts = sub["status"].value_counts()
        rows.append({"category": cat, "run": int(len(sub) - counts.get("not_applicable", 0)),
                     "passed": int(counts.get("pass", 0)), "failed": int(counts.get("fail", 0)),
                     "error": int(counts.get("error", 0)), "not_applicable": int(counts.get("not_applicable", 0))})
    out = pd.DataFrame(rows)
    total = out.drop(columns="category").sum()
    return pd.concat([out, pd.DataFrame([{"category": "Total", **total.to_dict()}])], ignore_index=True)


def _failures(df: pd.DataFrame) -> pd.DataFrame:
    bad = df[df["status"].isin(["fail", "error"])].copy()
    bad["_rank"] = bad["failure_level"].map({"error": 0, "warning": 1}).fillna(2)
    return bad.sort_values(["_rank", "pct_violated"], ascending=[True, False]).drop(columns="_rank")


def summary_lines(df: pd.DataFrame, fail_on: str = "error", limit: int = 15) -> list[str]:
    """A short summary for the terminal: counts per category, then the worst failures."""
    cats = by_category(df)
    lines = [f"{'category':<14}{'run':>7}{'passed':>8}{'failed':>8}{'error':>7}{'n/a':>7}"]
    for r in cats.itertuples(index=False):
        lines.append(f"{r.category:<14}{r.run:>7}{r.passed:>8}{r.failed:>8}{r.error:>7}{r.not_applicable:>7}")
    bad = _failures(df)
    if len(bad):
        lines.append(f"failed checks ({len(bad)}; error level first):")
        for r in bad.head(limit).itertuples(index=False):
            where = ".".join(x for x in (r.table, r.field) if x) + (f" [{r.concept_id}]" if r.concept_id else "")
            if r.status == "error":
                lines.append(f"  {r.failure_level:<8}{r.check_name} {where}: could not run: {r.error}")
            else:
                lines.append(f"  {r.failure_level:<8}{r.check_name} {where}: {r.num_violated_rows:,} of "
                             f"{r.num_denominator_rows:,} ({r.pct_violated:.2f}% > {r.threshold:g}%)")
        if len(bad) > limit:
            lines.append(f"  ... {len(bad) - limit} more in {RESULTS_CSV}")
    n = len(counted_failures(df, fail_on))
    lines.append(f"{n} check(s) fail at --fail-on {fail_on}" if n else f"no check fails at --fail-on {fail_on}")
    return lines


def _table(frame: pd.DataFrame, columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for r in frame[columns].itertuples(index=False):
        cells = "".join(f"<td>{html.escape('' if pd.isna(v) else str(v))}</td>" for v in r)
        body.append(f"<tr>{cells}</tr>")
    return f"<table class=\"dq-table\"><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def html_fragment(df: pd.DataFrame, fail_on: str = "error", limit: int = 200) -> str:
    """A self-contained ``<section>`` (no scripts, no external assets) for the study report."""
    n = len(counted_failures(df, fail_on))
    verdict = (f"{n} check(s) fail at the '{fail_on}' level" if n else f"no check fails at the '{fail_on}' level")
    bad = _failures(df).head(limit)
    parts = [
        '<section class="l059-dq" id="data-quality">',
        "<h2>Data quality</h2>",
        f"<p>Checks after OHDSI's Data Quality Dashboard (conformance, completeness, plausibility) "
        f"with its thresholds: {html.escape(verdict)}.</p>",
        _table(by_category(df), ["category", "run", "passed", "failed", "error", "not_applicable"]),
    ]
    if len(bad):
        parts.append(f"<h3>Failed checks ({len(_failures(df))})</h3>")
        parts.append(_table(bad, ["failure_level", "check_name", "table", "field", "concept_id", "num_violated_rows",
                                  "num_denominator_rows", "pct_violated", "threshold", "description"]))
    parts.append("</section>")
    return "\n".join(parts) + "\n"


def write_outputs(df: pd.DataFrame, out_dir: Path, fail_on: str = "error") -> dict[str, Path]:
    """Write ``dq_results.csv`` and ``dq.html`` into ``out_dir`` (created if needed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / RESULTS_CSV, "html": out_dir / HTML_FILE}
    df.to_csv(paths["csv"], index=False)
    paths["html"].write_text(html_fragment(df, fail_on), encoding="utf-8")
    return paths
