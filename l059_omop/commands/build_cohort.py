"""``l059-omop build-cohort``."""

from __future__ import annotations

import click

from l059_omop.cli import Settings, pass_settings
from l059_omop.errors import BadInput


def parse_overrides(items: tuple[str, ...]) -> dict[str, object]:
    """``NAME=VALUE`` pairs; numbers become numbers, anything else stays text (dates are checked later)."""
    out: dict[str, object] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise BadInput(f"--param {item!r}: use NAME=VALUE, e.g. --param max_inr=1.5")
        try:
            out[name] = int(value)
        except ValueError:
            try:
                out[name] = float(value)
            except ValueError:
                out[name] = value
    return out


@click.command("build-cohort")
@click.option("--cohort-id", default=1059, show_default=True, type=click.IntRange(min=0),
              help="cohort_definition_id to write (an earlier run of the same id is replaced).")
@click.option("--cohort-table", default="cohort", show_default=True, help="Cohort table in the results schema.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="Override a COHORT.md number, e.g. --param max_inr=1.5 (repeatable).")
@click.option("--scratch-schema", default=None, metavar="SCHEMA",
              help="Schema for the run's scratch tables (dropped after the run). Default: DuckDB keeps them "
                   "as temporary tables of the build's connection (fastest; ~3 GB at 1M persons), other "
                   "databases in the results schema. Name one on DuckDB to use less memory.")
@pass_settings
def command(settings: Settings, cohort_id: int, cohort_table: str, params: tuple[str, ...],
            scratch_schema: str | None) -> None:
    """Run the L059 cohort definition; write the cohort, Circe's inclusion tables and the attrition."""
    from l059_omop.cohort import build_cohort, format_attrition

    attrition = build_cohort(settings.engine(), cdm_schema=settings.cdm_schema,
                             results_schema=settings.results_schema, cohort_id=cohort_id, cohort_table=cohort_table,
                             scratch_schema=scratch_schema, **parse_overrides(params))
    final = int(attrition[attrition.rule_sequence.notna()].persons_remaining.iloc[-1])
    settings.echo(f"cohort {cohort_id}: {final:,} persons in {settings.results_schema}.{cohort_table}")
    for line in format_attrition(attrition):
        settings.echo(line)
