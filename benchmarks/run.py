"""Run the benchmarks and print one table.

    python benchmarks/run.py [area ...] [--quick]

Each area is a module ``benchmarks/bench_<area>.py`` with ``def run(quick: bool) -> list[dict]``; a row has
``case``, ``rows``, ``seconds``, ``rows_per_s``, ``peak_mb``, ``target``, ``ok`` and optionally ``note``.
Without areas, every bench_*.py runs. The exit code is 1 if any row misses its target (``ok`` is False) or
an area fails, so CI can use it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

COLUMNS = [("area", "<"), ("case", "<"), ("rows", ">"), ("seconds", ">"), ("rows_per_s", ">"), ("peak_mb", ">"),
           ("target", "<"), ("ok", "<"), ("note", "<")]


def available_areas() -> list[str]:
    return sorted(p.stem[len("bench_"):] for p in HERE.glob("bench_*.py"))


def _fmt(key: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if key == "ok":
        return "yes" if value else "NO"
    if key == "rows" and isinstance(value, (int, float)):
        return f"{value:,.0f}"
    if key == "rows_per_s" and isinstance(value, (int, float)):
        return f"{value:,.0f}"
    if key in ("seconds", "peak_mb") and isinstance(value, (int, float)):
        return f"{value:,.1f}" if value >= 1 else f"{value:.3f}"
    return str(value)


def format_table(rows: list[dict]) -> str:
    cells = [[_fmt(k, r.get(k)) for k, _ in COLUMNS] for r in rows]
    widths = [max([len(k)] + [len(c[i]) for c in cells]) for i, (k, _) in enumerate(COLUMNS)]
    keep = [i for i, (k, _) in enumerate(COLUMNS) if k != "note" or any(c[i] for c in cells)]

    def line(values: list[str]) -> str:
        return " | ".join(f"{values[i]:{COLUMNS[i][1]}{widths[i]}}" for i in keep).rstrip()

    out = [line([k for k, _ in COLUMNS]), "-|-".join("-" * widths[i] for i in keep)]
    out += [line(c) for c in cells]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("areas", nargs="*", help=f"areas to run (default: all of {', '.join(available_areas())})")
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run, ~1/20 of the full sizes)")
    ap.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = ap.parse_args(argv)
    areas = args.areas or available_areas()
    unknown = [a for a in areas if a not in available_areas()]
    if unknown:
        ap.error(f"unknown area(s) {', '.join(unknown)}; have {', '.join(available_areas())}")
    rows: list[dict] = []
    failed = False
    for area in areas:
        start = time.perf_counter()
        try:
            module = importlib.import_module(f"bench_{area}")
            for r in module.run(quick=args.quick):
                rows.append({"area": area, **r})
        except Exception as exc:  # noqa: BLE001 - one area failing must not hide the others
            failed = True
            traceback.print_exc()
            rows.append({"area": area, "case": "FAILED", "note": f"{type(exc).__name__}: {exc}"[:200]})
        print(f"[{area}: {time.perf_counter() - start:.0f} s]", file=sys.stderr, flush=True)
    print(format_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=str), encoding="utf-8")
    return 1 if failed or any(r.get("ok") is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
