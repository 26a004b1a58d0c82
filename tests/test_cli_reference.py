"""docs/cli.md is generated from the click help; this fails when a command's options change without it."""

from pathlib import Path

from l059_omop.clidoc import reference


def test_cli_reference_is_current():
    doc = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
    assert doc.read_text(encoding="utf-8") == reference(), "run: python -m l059_omop.clidoc > docs/cli.md"
