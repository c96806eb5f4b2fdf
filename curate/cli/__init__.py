"""The `curate` command line. Each command group is a module registered as a built-in plugin
through the `register_commands` hook, exactly as a third-party plugin adds commands."""

from __future__ import annotations

import os
import sys

import click

from curate import __version__
from curate.errors import CurateError


class CurateGroup(click.Group):
    """Turns CurateError into one line on stderr and a non-zero exit, without a traceback.

    Set CURATE_TRACEBACK=1 to see the traceback of every error, user mistakes included.
    """

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CurateError as error:
            if os.environ.get("CURATE_TRACEBACK"):
                raise
            click.echo(f"error: {one_line(str(error))}", err=True)
            sys.exit(error.exit_code)


def one_line(message: str) -> str:
    """A message with control characters shown as escapes: a carriage return from a recipe's
    "data\\reviews.jsonl" (TOML reads \\r as one) would otherwise overwrite the line."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in message)


def build_cli() -> click.Group:
    @click.group(cls=CurateGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, prog_name="curate")
    def cli():
        """Curate instruction data into a fine-tuned model you can trust.

        \b
        Examples:
          curate validate recipes/quickstart.toml
          curate run recipes/quickstart.toml
          curate why runs/quickstart 3f9c0a1b2c3d4e5f
          curate plugins --all
        """

    from curate.pluginmanager import get_host

    host = get_host()
    commands = host.registry("command")
    for name, entry in sorted(commands.entries.items()):
        cli.add_command(entry.obj, name)
    for name, plugins in commands.clashes.items():
        click.echo(f"warning: command '{name}' is registered by plugins "
                   f"{' and '.join(plugins)}; using {plugins[0]}'s", err=True)
    for name, reason in host.failed.items():
        click.echo(f"warning: plugin '{name}' failed to load: {reason}", err=True)
    for warning in host.warnings:
        click.echo(f"warning: {warning}", err=True)
    return cli


def main() -> None:
    build_cli()(prog_name="curate")
