"""Golden files: compare, or rewrite them when L059_UPDATE_GOLDEN=1.

Regenerate after an intended change of the SQL, the concept sets or the Circe export:

    L059_UPDATE_GOLDEN=1 /work/venv/bin/pytest tests/cohort/test_render.py tests/cohort/test_clients.py
"""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"


def check(relative: str, text: str) -> None:
    path = GOLDEN / relative
    if os.environ.get("L059_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
        return
    assert path.exists(), f"golden file {path} missing: run with L059_UPDATE_GOLDEN=1"
    want = path.read_text(encoding="utf-8")
    assert text == want, f"{relative} differs from its golden file (intended? regenerate with L059_UPDATE_GOLDEN=1)"
