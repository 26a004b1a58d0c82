"""Generate the CLI reference (docs/cli.md) from the click help, so the documentation cannot drift:
``python -m l059_omop.clidoc > docs/cli.md`` (a test checks the file is current)."""

from __future__ import annotations

import click

from l059_omop.cli import main


def _help(cmd: click.Command, path: list[str], parent: click.Context | None = None) -> str:
    # the same context settings as a real invocation (e.g. -h for help), a fixed width for stable output
    ctx = click.Context(cmd, info_name=" ".join(path), parent=parent, terminal_width=100, max_content_width=100,
                        **(main.context_settings if parent is None else {}))
    return cmd.get_help(ctx)


def reference() -> str:
    out = ["# l059-omop CLI reference", "",
           "Generated from the click help by `python -m l059_omop.clidoc > docs/cli.md`; do not edit by hand.", "",
           "```", _help(main, ["l059-omop"]), "```", ""]
    group_ctx = click.Context(main, info_name="l059-omop", **main.context_settings)
    for name in main.list_commands(group_ctx):
        cmd = main.get_command(group_ctx, name)
        out += [f"## `l059-omop {name}`", "", "```", _help(cmd, ["l059-omop", name], group_ctx), "```", ""]
    return "\n".join(out)


if __name__ == "__main__":
    click.echo(reference(), nl=False)
