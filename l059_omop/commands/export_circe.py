"""``l059-omop export-circe``."""

from __future__ import annotations

from pathlib import Path

import click

from l059_omop.cli import Settings, pass_settings
from l059_omop.commands.build_cohort import parse_overrides


@click.command("export-circe")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSON file to write (plus FILE.sha256 and the sidecar <name>.meta.json); default: print.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="Override a COHORT.md number.")
@pass_settings
def command(settings: Settings, out: Path | None, params: tuple[str, ...]) -> None:
    """Export the cohort as OHDSI Circe JSON (ATLAS), concept sets resolved against the loaded vocabulary."""
    from l059_omop.cohort.circe import export_circe

    export = export_circe(settings.engine(), cdm_schema=settings.cdm_schema, **parse_overrides(params))
    if out is None:
        click.echo(export.json_text, nl=False)
        return
    for path in export.write(out):
        settings.echo(f"wrote {path}")
    settings.echo(f"sha256 {export.sha256}")
    for sel in export.sidecar["unresolved_selectors"]:
        settings.echo(f"not in the loaded vocabulary: {sel}")
