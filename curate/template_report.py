"""What `curate validate` and `curate preview` say about a recipe's chat template.

Both read a sample of the sources' records (the first ones, in recipe order) without running
any stage, and only when the tokenizer is a local folder: nothing is downloaded here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from curate.chat_templates import Selection, TemplateRefused, render, render_text
from curate.pluginmanager import PluginHost
from curate.recipe import Recipe
from curate.records import Record
from curate.sources import SourceContext
from curate.example_checks import ExampleJudge
from curate.template_checks import raise_errors, template_findings
from curate.template_step import has_model, is_local, load_template, template_steps

VALIDATE_SAMPLE = 200


def sample_records(recipe: Recipe, host: PluginHost, limit: int) -> list[Record]:
    from curate.ingest import SourceCounts, read_source

    def records() -> Iterator[Record]:
        for spec in recipe.sources:
            context = SourceContext(recipe.file, spec.key_path, recipe.run.seed)
            for outcome in read_source(spec, context, host.registry("format"), SourceCounts()):
                if isinstance(outcome, Record):
                    yield outcome

    return list(islice(records(), limit))


def recipe_template(recipe: Recipe, host: PluginHost) -> tuple[Any, Selection]:
    return load_template(recipe.model, recipe.file.parent, host.registry("chat template"))


def check_template_before_run(recipe: Recipe, host: PluginHost) -> None:
    """What `curate run` checks before its first step: that the chat template compiles and
    ends curate's test conversations with a trained end-of-turn token (local tokenizers only),
    so a broken template stops the run now, not when the chat-template step comes."""
    if template_steps(recipe, host) and is_local(recipe.model, recipe.file.parent):
        raise_errors(template_findings(*recipe_template(recipe, host), []))


def validate_lines(recipe: Recipe, host: PluginHost) -> list[str]:
    """The chat-template part of `curate validate` (nothing without a [model]); raises
    CurateError for a template that cannot train."""
    if not has_model(recipe.model):
        return []
    lines = [f"  stage {len(recipe.stages) + index:02d}-{spec.name}: added for [model]"
             for index, spec in enumerate(template_steps(recipe, host), start=1)]
    if not is_local(recipe.model, recipe.file.parent):
        name = recipe.model.tokenizer or recipe.model.path
        return [*lines, f"  chat template: not checked here, '{name}' is not a local folder"
                        f" (curate run checks it)"]
    tokenizer, selection = recipe_template(recipe, host)
    samples = sample_records(recipe, host, VALIDATE_SAMPLE)
    findings = template_findings(tokenizer, selection, [r.messages for r in samples[:20]])
    raise_errors(findings)
    lines.append(f"  chat template {selection.label}: {selection.how}")
    if selection.template and selection.template.default_system_prompt:
        lines.append(f"    without a system message the template says:"
                     f" {selection.template.default_system_prompt!r}")
    for finding in findings:
        lines.append(f"    {finding.level}: {finding.message}")
        lines += [f"      {line}" for line in finding.detail.splitlines()]
    return [*lines, *_sample_lines(tokenizer, selection, samples, recipe.model.max_length)]


def _sample_lines(tokenizer: Any, selection: Selection, samples: list[Record],
                  max_length: int) -> list[str]:
    judge = ExampleJudge(tokenizer, selection, max_length)
    reasons = Counter(verdict.reason for verdict in (judge.judge(r.messages)[0] for r in samples)
                      if verdict)
    lines = [f"    first {len(samples):,} records: {judge.stats.describe(max_length)}"]
    if reasons:
        listed = ", ".join(f"{count:,} {reason}" for reason, count in sorted(reasons.items()))
        lines.append(f"    the chat-template step would reject {sum(reasons.values()):,} of"
                     f" them: {listed}")
    return lines


@dataclass
class Preview:
    """One record as training text, cut into (text, trained) pieces."""

    record: Record
    pieces: list[tuple[str, bool]]
    tokens: int = 0
    trained: int = 0
    cut: int = 0
    """Tokens beyond max_length, left out of the pieces."""
    refused: str = ""


def preview(tokenizer: Any, selection: Selection, record: Record, max_length: int) -> Preview:
    try:
        text = render_text(tokenizer, selection.text, record.messages)
        example = render(tokenizer, selection.text, record.messages)
    except TemplateRefused as error:
        return Preview(record, [], refused=str(error))
    kept = example.offsets[:max_length]
    text = text[:kept[-1][1]] if len(example.offsets) > max_length else text
    marks = [False] * len(text)
    for (start, end), trained in zip(kept, example.trained):
        if trained:
            marks[start:end] = [True] * (end - start)
    return Preview(record, _pieces(text, marks), len(example.input_ids),
                   example.trained_count(max_length), max(0, len(example.input_ids) - max_length))


def _pieces(text: str, marks: list[bool]) -> list[tuple[str, bool]]:
    pieces: list[tuple[str, bool]] = []
    for char, mark in zip(text, marks):
        if pieces and pieces[-1][1] == mark:
            pieces[-1] = (pieces[-1][0] + char, mark)
        else:
            pieces.append((char, mark))
    return pieces


def dataset_records(run_dir: Path, limit: int) -> list[Record] | None:
    """The first records of a finished run's training split, or None without one."""
    import json

    path = run_dir / "dataset" / "train.jsonl"
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as lines:
        rows = [json.loads(line) for line in islice(lines, limit)]
    return [Record(row["messages"], row.get("source", ""), row.get("origin", "human"),
                   row.get("meta", {}), row.get("id", "")) for row in rows]
