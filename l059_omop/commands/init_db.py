"""``l059-omop init-db``."""

from __future__ import annotations

from pathlib import Path

import click

from l059_omop.cli import Settings, pass_settings
from l059_omop.db.api import init_db
from l059_omop.db.engine import validate_identifier
from l059_omop.errors import BadInput


def _schema(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Refuse a bad schema name while parsing, before any connection is made (exit 2)."""
    try:
        return validate_identifier(value, "etl-schema")
    except BadInput as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("init-db")
@click.option("--vocab", "vocab_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Load an Athena vocabulary download from DIR instead of the bundled subset.")
@click.option("--etl-schema", default="etl", show_default=True, callback=_schema, help="Schema of the ETL bookkeeping tables.")
@click.option("--defer-constraints", is_flag=True,
              help="PostgreSQL: add no foreign keys or secondary indexes yet, for a faster bulk load (OHDSI's "
                   "order); run init-db again after loading to add them (each one the data violates is reported).")
@pass_settings
def command(settings: Settings, vocab_dir: Path | None, etl_schema: str, defer_constraints: bool) -> None:
    """Create all OMOP CDM v5.4 tables, the results and etl tables, and load the vocabulary. Idempotent."""
    result = init_db(settings.engine(), settings.cdm_schema, settings.results_schema, etl_schema,
                     vocab_dir=vocab_dir, progress=not settings.quiet, constraints=not defer_constraints)
    for line in result.summary_lines():
        settings.echo(line)
