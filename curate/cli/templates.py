"""`curate templates` (the registered chat templates) and `curate preview` (training examples
with their trained tokens marked, like a label debugger)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from curate import hookimpl


@hookimpl
def register_commands(register):
    register(templates)
    register(preview)


@click.command()
@click.option("--show", metavar="NAME", help="Print this template's Jinja text.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def templates(show: str | None, as_json: bool):
    """List the chat templates plugins registered, and how each matches a model.

    \b
    Examples:
      curate templates
      curate templates --show qwen2.5
    """
    from curate.pluginmanager import get_host

    registry = get_host().registry("chat template")
    if show:
        click.echo(registry.get(show).text())
        return
    rows = [_describe(entry) for entry in sorted(registry.entries.values(), key=lambda e: e.name)]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for row in rows:
        click.echo(f"{row['name']:<10} {row['description']}")
        click.echo(f"{'':<10} ends turns with {' or '.join(row['end_of_turn'])}; matches"
                   f" {_matches(row)}")
        if row["default_system_prompt"]:
            click.echo(f"{'':<10} default system prompt: {row['default_system_prompt']!r}")
        if not row["builtin"]:
            click.echo(f"{'':<10} from plugin {row['plugin']}")


def _describe(entry) -> dict:
    template = entry.obj
    return {"name": template.name, "description": template.description,
            "end_of_turn": list(template.end_of_turn),
            "architectures": list(template.architectures),
            "name_patterns": list(template.name_patterns),
            "originals": len(template.originals),
            "default_system_prompt": template.default_system_prompt,
            "plugin": entry.plugin, "builtin": entry.builtin}


def _matches(row: dict) -> str:
    ways = []
    if row["originals"]:
        ways.append("tokenizers shipping its original template")
    ways += [f"names /{pattern}/" for pattern in row["name_patterns"]]
    ways += [f"config {architecture}" for architecture in row["architectures"]]
    return ", ".join(ways) or "only when named in a recipe"


@click.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-n", "count", type=click.IntRange(min=1), default=3, show_default=True,
              help="How many examples to show.")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Take the examples from this run's dataset (default: the recipe's run"
                   " folder when it has one, else the sources).")
@click.option("--color/--no-color", default=None,
              help="Highlight trained text in colour (default: when printing to a terminal);"
                   " without colour it is wrapped in [[...]].")
def preview(recipe: Path, count: int, run_dir: Path | None, color: bool | None):
    """Print training examples as the model sees them, with the trained (loss-bearing) text
    highlighted: the chat template's rendering of each record, cut at [model] max_length.

    \b
    Examples:
      curate preview recipes/quickstart.toml
      curate preview recipes/quickstart.toml -n 10 --no-color | less
    """
    from curate.errors import CurateError
    from curate.pluginmanager import get_host
    from curate.recipe import load_recipe
    from curate.example_checks import ExampleJudge
    from curate.template_report import (dataset_records, preview as render_preview,
                                        recipe_template, sample_records)

    host = get_host()
    loaded = load_recipe(recipe, host)
    if not (loaded.model.path or loaded.model.tokenizer):
        raise CurateError(f"{recipe}: preview needs a tokenizer: add [model] path = \"MODEL\"")
    tokenizer, selection = recipe_template(loaded, host)
    folder = run_dir or loaded.default_run_dir()
    records = dataset_records(folder, count)
    where = f"{folder}/dataset/train.jsonl"
    if records is None:
        records, where = sample_records(loaded, host, count), "the sources"
    colour = sys.stdout.isatty() if color is None else color
    plural = "" if len(records) == 1 else "s"
    click.echo(f"chat template {selection.label} ({selection.how}); {len(records)} example{plural}"
               f" from {where}; trained text {_trained('like this', colour)}", color=colour)
    judge = ExampleJudge(tokenizer, selection, loaded.model.max_length)
    for number, record in enumerate(records, start=1):
        shown = render_preview(tokenizer, selection, record, loaded.model.max_length)
        click.echo(_header(number, shown), color=colour)
        verdict = judge.judge(record.messages)[0]
        if verdict and not shown.refused:
            click.echo(f"(the chat-template step rejects this example, {verdict.reason}:"
                       f" {verdict.detail})")
        if shown.refused:
            click.echo(f"(the template refuses this conversation: {shown.refused})")
            continue
        click.echo("".join(_trained(text, colour) if trained else text
                           for text, trained in shown.pieces), color=colour)
        if shown.cut:
            click.echo(f"[... {shown.cut:,} more tokens cut at max_length"
                       f" {loaded.model.max_length:,}]")


def _header(number: int, shown) -> str:
    record = shown.record
    came_from = record.meta.get("from", "")
    where = f", {came_from}" if came_from else ""
    return (f"\n--- {number}: {record.id} (source {record.source}{where}): {shown.tokens:,}"
            f" tokens, {shown.trained:,} trained")


def _trained(text: str, colour: bool) -> str:
    return click.style(text, fg="green", bold=True) if colour else f"[[{text}]]"
