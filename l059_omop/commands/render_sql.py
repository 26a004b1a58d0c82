"""``l059-omop render-sql``."""

from __future__ import annotations

from pathlib import Path

import click

from l059_omop.cli import Settings, pass_settings
from l059_omop.commands.build_cohort import parse_overrides
from l059_omop.sqlrender import DIALECTS

RENDER_DIALECTS = [d for d in DIALECTS if d != "sql server"]


@click.command("render-sql")
@click.option("--dialect", required=True, type=click.Choice(RENDER_DIALECTS), help="Target database dialect.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write l059_cohort_<dialect>.sql into (default: print).")
@click.option("--cohort-id", default=1059, show_default=True, type=click.IntRange(min=0))
@click.option("--cohort-table", default="cohort", show_default=True)
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="Override a COHORT.md number.")
@click.option("--ohdsi-source", is_flag=True,
              help="Write the OHDSI SQL source with its @parameters (for SqlRender) instead; --dialect names the file.")
@pass_settings
def command(settings: Settings, dialect: str, out: Path | None, cohort_id: int, cohort_table: str,
            params: tuple[str, ...], ohdsi_source: bool) -> None:
    """Render the cohort SQL (OHDSI SQL translated with sqlglot) for a database dialect."""
    from l059_omop.cohort import render_cohort_sql
    from l059_omop.cohort.definition import ohdsi_sql

    if ohdsi_source:
        text = ohdsi_sql(rendered=False)
        dialect = "ohdsi_source"
    else:
        text = render_cohort_sql(dialect, cdm_schema=settings.cdm_schema, results_schema=settings.results_schema,
                                 cohort_id=cohort_id, cohort_table=cohort_table, params=parse_overrides(params))
    if out is None:
        click.echo(text, nl=False)
        return
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"l059_cohort_{dialect}.sql"
    path.write_text(text, encoding="utf-8")
    settings.echo(f"wrote {path}")
