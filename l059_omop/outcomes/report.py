"""report.html: one self-contained page (inline CSS, images as base64 data URIs, no scripts, no external
requests) so it can be mailed or archived as it is. Only suppressed tables go in."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence

import pandas as pd

_CSS = """
body { font-family: "DejaVu Sans", Arial, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; border-bottom: 2px solid #1f4e79; padding-bottom: .3em; }
h2 { font-size: 1.2em; color: #1f4e79; margin-top: 1.8em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0 1em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #eef3f8; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; display: block; margin: .5em 0; }
.meta td { text-align: left; }
.note { color: #555; font-size: .85em; }
"""


def img_tag(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def table_html(df: pd.DataFrame, float_format: str = "{:.3f}") -> str:
    if df is None or df.empty:
        return '<p class="note">none</p>'

    def fmt(v):
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return ""
        if isinstance(v, float):
            if v in (float("inf"), float("-inf")):
                return "NR" if v > 0 else "-NR"  # not reached (e.g. an upper confidence limit)
            return float_format.format(v) if v != int(v) or abs(v) < 1 else f"{v:g}"
        return str(v)

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(v))}</td>" for v in row) + "</tr>"
                   for row in df.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def build_report(title: str, meta: Mapping[str, object], sections: Sequence[tuple[str, str]]) -> str:
    """``sections``: (heading, HTML body) pairs, bodies built from ``table_html`` / ``img_tag``."""
    meta_rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                        for k, v in meta.items())
    body = "".join(f"<h2>{html.escape(h)}</h2>\n{b}\n" for h, b in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><table class=\"meta\">{meta_rows}</table>\n{body}</body></html>\n")
