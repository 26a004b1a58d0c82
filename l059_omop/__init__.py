"""l059-omop: FHIR and hospital records -> OMOP CDM v5.4, the ALTER-L059 cohort, and its outcomes."""

__version__ = "0.1.0"
