"""Deterministic OMOP ids: a hash of (source system, resource type, source id, row key) fitted into the
positive range of OMOP's 32-bit integer columns.

Two keys hashing to the same id (a birthday collision, likely beyond ~50,000 rows a table) are told apart
by probing: the later key gets the hash of ``key + '#1'``, ``'#2'`` ... and the choice is kept in
``etl.source_id_map``, which is consulted first on every later load, so an id never changes once given.
"""

from __future__ import annotations

import hashlib

MAX_ID = 2**31 - 1


def key_text(source_system: str, resource_type: str, source_id: str, row: str = "") -> str:
    return f"{source_system}|{resource_type}|{source_id}|{row}"


def hashed_id(text: str, probe: int = 0) -> int:
    """An id in 1 .. 2**31-1 from the first 8 bytes of sha256(text[#probe])."""
    if probe:
        text = f"{text}#{probe}"
    h = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
    return h % MAX_ID + 1
