"""Validate synthetic FHIR output with fhir.resources R4B: ``python -m l059_omop.synth.validate DIR``.

Checks every Bundle under DIR/bundles and every line of DIR/*.ndjson, the Bundle and each resource on its
own model; prints a JSON summary (resources per type, errors). Run as its own process so that a test
folder named ``fhir`` on ``sys.path`` cannot shadow the ``fhir.resources`` package.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


def validate_dir(folder: Path, max_errors: int = 20) -> dict:
    from fhir.resources.R4B import get_fhir_model_class
    from fhir.resources.R4B.bundle import Bundle

    counts: Counter[str] = Counter()
    errors: list[str] = []

    def check(r: dict, where: str) -> None:
        try:
            get_fhir_model_class(r["resourceType"]).model_validate(r)
            counts[r["resourceType"]] += 1
        except Exception as exc:  # noqa: BLE001 - collected and reported
            if len(errors) < max_errors:
                errors.append(f"{where}: {str(exc)[:300]}")

    for p in sorted((folder / "bundles").rglob("*.json")) if (folder / "bundles").is_dir() else []:
        b = json.loads(p.read_text(encoding="utf-8"))
        try:
            Bundle.model_validate(b)
            counts["Bundle"] += 1
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{p.name}: {str(exc)[:300]}")
        for e in b.get("entry", []):
            check(e["resource"], f"{p.name} {e['resource'].get('id')}")
    for p in sorted(folder.glob("*.ndjson")):
        with p.open(encoding="utf-8") as fh:
            for i, line in enumerate(fh, 1):
                r = json.loads(line)
                if r.get("resourceType") != p.stem:
                    errors.append(f"{p.name} line {i}: resourceType {r.get('resourceType')}")
                check(r, f"{p.name} line {i}")
    return {"resources": dict(sorted(counts.items())), "errors": errors}


if __name__ == "__main__":
    res = validate_dir(Path(sys.argv[1]))
    print(json.dumps(res))
    sys.exit(1 if res["errors"] else 0)
