"""``l059-omop pool results_a.zip results_b.zip ... --out DIR``."""

from __future__ import annotations

from pathlib import Path

import click

from l059_omop.cli import Settings, pass_settings


@click.command("pool")
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the pooled tables, plots and report.html.")
@click.option("--ci-method", type=click.Choice(["log", "log-log"]), default="log", show_default=True)
@pass_settings
def command(settings: Settings, results: tuple[Path, ...], out: Path, ci_method: str) -> None:
    """Pool aggregate results of several sites: attrition, Kaplan-Meier from summed life tables,
    meta-analysis of hazard ratios (fixed and random effects), plots and a self-contained report.html."""
    from l059_omop.network.pool import pool_files

    pooled = pool_files(list(results), out, ci_method)
    settings.echo(f"pooled {len(pooled.sites)} sites ({', '.join(pooled.sites)}) into {out}")
    summary = pooled.tables["km_summary.csv"]
    for row in summary[(summary["site"] == "pooled") & (summary["subgroup"] == "all")].itertuples(index=False):
        settings.echo(f"  {row.endpoint}: n={row.n}, events={row.events}, median {row.median_days:.0f} days "
                      f"({row.median_lower_days:.0f}, {row.median_upper_days:.0f})")
    for row in pooled.tables["meta_analysis.csv"].itertuples(index=False):
        settings.echo(f"  HR {row.endpoint} {row.term}: FE {row.fe_hr:.3f} ({row.fe_lower:.3f}-{row.fe_upper:.3f}), "
                      f"RE {row.re_hr:.3f}, I2 {100 * row.i2:.0f}% over {row.k} sites")
    n_supp = len(pooled.tables["suppressed_cells_by_site.csv"])
    if n_supp:
        settings.echo(f"  {n_supp} cells suppressed or withheld at sites: see suppressed_cells_by_site.csv")
    if not pooled.manifest["km_exact"]:
        settings.echo("  note: some sites coarsened their life tables (suppression on): the pooled KM is approximate")
