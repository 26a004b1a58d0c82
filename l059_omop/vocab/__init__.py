"""Vocabulary: loading (bundled subset or Athena download), code lookup, concept-set resolution."""

from l059_omop.vocab.lookup import ConceptMatch, Vocabulary, vocabulary_for_system

__all__ = ["ConceptMatch", "Vocabulary", "vocabulary_for_system"]
