"""Database access: engines, the CDM schema generated from the OHDSI specification, bulk writes."""

from l059_omop.db.engine import connect, dialect_of, redact, validate_identifier

__all__ = ["connect", "dialect_of", "redact", "validate_identifier"]
