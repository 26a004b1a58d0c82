"""The code and concept-id tables of the generator, read once from ``codes.yaml``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

CODES_FILE = Path(__file__).with_name("codes.yaml")


@lru_cache(maxsize=1)
def codes() -> dict[str, Any]:
    with CODES_FILE.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)
