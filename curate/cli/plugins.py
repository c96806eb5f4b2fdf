"""`curate plugins`: what is installed and what each plugin registers."""

from __future__ import annotations

import json

import click

from curate import hookimpl


@hookimpl
def register_commands(register):
    register(plugins)


@click.command()
@click.option("--all", "show_all", is_flag=True, help="Include curate's built-in plugins.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def plugins(show_all: bool, as_json: bool):
    """List installed plugins, their versions and what each registers.

    \b
    Examples:
      curate plugins
      curate plugins --all --json
    """
    from curate.pluginmanager import get_host

    host = get_host()
    listed = [info for info in host.plugins.values() if show_all or not info.builtin]
    rows = [_describe(info, host) for info in listed]
    if as_json:
        click.echo(json.dumps({"plugins": rows, "failed": host.failed}, indent=2))
        return
    if not rows:
        click.echo("no third-party plugins installed (curate plugins --all lists built-ins)")
    for row in rows:
        version = f" {row['version']}" if row["version"] else ""
        click.echo(f"{row['name']}{version}{' (built-in)' if row['builtin'] else ''}")
        for kind, name, note in row["registers"]:
            click.echo(f"  {kind}: {name}{note}")
    for name, reason in host.failed.items():
        click.echo(f"{name} FAILED TO LOAD: {reason}")


def _describe(info, host) -> dict:
    registers = []
    for kind, name in info.registered:
        entry = host.registry(kind).entries.get(name)
        note = ""
        if entry is not None and entry.plugin != info.name:
            note = f" (replaced by {entry.plugin})"
        elif entry is not None and entry.replaces:
            note = f" (replaces built-in {entry.replaces})"
        if name in host.registry(kind).clashes:
            note = f" (CLASH with {', '.join(p for p in host.registry(kind).clashes[name] if p != info.name)})"
        registers.append([kind, name, note])
    return {"name": info.name, "version": info.version, "distribution": info.distribution,
            "builtin": info.builtin, "registers": registers}
