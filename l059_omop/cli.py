"""The ``l059-omop`` command line: a thin click layer over the Python API (DESIGN §2).

Each command lives in ``l059_omop/commands/<name>.py`` and is imported only when invoked, so a missing
optional piece never breaks the other commands and ``--help`` stays fast.
"""

from __future__ import annotations

import importlib
import logging
import sys
from dataclasses import dataclass, field

import click

from l059_omop import __version__
from l059_omop.db.engine import (
    DEFAULT_URL,
    check_connection,
    connect,
    redact,
    resolve_url,
    validate_identifier,
)
from l059_omop.errors import BadInput, L059Error

# command name -> (module under l059_omop.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "init-db": ("init_db", "Create the OMOP CDM v5.4, results and etl tables; load the vocabulary."),
    "import-cdm": ("import_cdm", "Import an OMOP CDM exported as CSV files (one per table)."),
    "load-fhir": ("load_fhir", "Load FHIR R4 Bundles, bulk NDJSON or a FHIR server into OMOP."),
    "load-records": ("load_records", "Load hospital extracts (CSV/Excel) through a declarative mapping."),
    "build-cohort": ("build_cohort", "Run the L059 cohort definition; write cohort and attrition."),
    "outcomes": ("outcomes", "PFS, OS, response, safety and subgroups; CSV, PNG and an HTML report."),
    "render-sql": ("render_sql", "Render the cohort SQL for a database dialect."),
    "export-circe": ("export_circe", "Export the cohort as OHDSI Circe JSON (ATLAS)."),
    "synth": ("synth", "Generate synthetic ES-SCLC patients with a truth file."),
    "demo": ("demo", "synth -> init-db -> load -> build-cohort -> outcomes on a fresh DuckDB file."),
    "dq": ("dq", "Data-quality checks over the CDM."),
    "package": ("package", "Export the study package for network sites."),
    "run-package": ("run_package", "Run a study package at a site; aggregate-only results."),
    "pool": ("pool", "Pool aggregate results from several sites."),
    "build-eras": ("build_eras", "Derive drug_era and condition_era from the exposures (30-day gaps)."),
    "runs": ("runs", "List the loads of the database; close those a killed load left running."),
}


@dataclass
class Settings:
    """The common options, passed to every command as the click context object."""

    db: str
    cdm_schema: str
    results_schema: str
    verbose: int = 0
    quiet: bool = False
    _engine: object = field(default=None, repr=False)

    def engine(self, check: bool = True):
        if self._engine is None:
            self._engine = connect(self.db)
            if check:
                check_connection(self._engine)
        return self._engine

    def echo(self, message: str = "", err: bool = False) -> None:
        if not self.quiet:
            click.echo(message, err=err)


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module_name, short = COMMANDS[name]
        try:
            module = importlib.import_module(f"l059_omop.commands.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"l059_omop.commands.{module_name}":
                raise

            @click.command(name=name, help=f"{short} (not available in this version)")
            def missing() -> None:
                raise L059Error(f"'{name}' is not implemented in l059-omop {__version__}")

            return missing
        cmd = module.command
        cmd.short_help = cmd.short_help or short
        return cmd

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except L059Error as exc:
            _fail(ctx, exc, exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("l059-omop: interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - last resort: one line, no traceback unless --verbose
            _fail(ctx, exc, 1)


def _fail(ctx: click.Context, exc: BaseException, code: int) -> None:
    settings = ctx.find_object(Settings)
    if settings and settings.verbose:
        import traceback

        click.echo(redact("".join(traceback.format_exception(exc)), settings.db), err=True)
    url = settings.db if settings else None
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    click.echo(f"l059-omop: error: {redact(message, url)}", err=True)
    sys.exit(code)


def _schema(ctx, param, value: str) -> str:
    try:
        return validate_identifier(value, param.name.replace("_", "-"))
    except BadInput as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="l059-omop")
@click.option("--db", metavar="URL", default=None,
              help=f"SQLAlchemy database URL [env L059_OMOP_DB; default {DEFAULT_URL}].")
@click.option("--cdm-schema", default="cdm", show_default=True, callback=_schema, help="Schema of the CDM tables.")
@click.option("--results-schema", default="results", show_default=True, callback=_schema,
              help="Schema of the cohort and attrition tables.")
@click.option("-v", "--verbose", count=True, help="More detail; tracebacks on errors.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.pass_context
def main(ctx: click.Context, db: str | None, cdm_schema: str, results_schema: str, verbose: int,
         quiet: bool) -> None:
    """l059-omop: FHIR and hospital records -> OMOP CDM v5.4, the ALTER-L059 ES-SCLC cohort in portable
    OHDSI SQL, and its outcomes (PFS, OS, response, safety)."""
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    if quiet:
        level = logging.ERROR
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("l059_omop")
    root.handlers[:] = [handler]
    root.setLevel(level)
    ctx.obj = Settings(db=resolve_url(db), cdm_schema=cdm_schema, results_schema=results_schema,
                       verbose=verbose, quiet=quiet)


pass_settings = click.make_pass_decorator(Settings)

if __name__ == "__main__":
    # ``python -m l059_omop.cli`` runs this file as __main__; the commands import ``l059_omop.cli``, whose
    # Settings class would be a different one, so dispatch through the imported module.
    from l059_omop.cli import main as _main

    _main()
