"""The report's "Evaluation" section, when the run has `eval/results.json`: base against tuned
per metric, the forgetting verdict, the judge's tally, the training and eval loss curves (from
`train/log.jsonl`), and examples where base and tuned answered differently (from
`eval/samples.jsonl`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from curate.plugins.report_charts import line_chart

EXAMPLES = 8
TRAIN_LOSS, EVAL_LOSS = "#2f6690", "#c8553d"


@dataclass
class Comparison:
    evaluation: str
    metric: str
    base: float
    tuned: float
    lower_is_better: bool = False


@dataclass
class EvalReport:
    comparisons: list[Comparison]
    verdicts: list[str]
    """Sentences: the forgetting check, the judge's tally, evaluations of unknown shape."""
    train_loss: list[tuple[float, float]] = field(default_factory=list)
    eval_loss: list[tuple[float, float]] = field(default_factory=list)
    examples: list[dict] = field(default_factory=list)


def gather_evaluation(run_dir: Path) -> EvalReport | None:
    results_file = run_dir / "eval" / "results.json"
    if not results_file.is_file():
        return None
    results = json.loads(results_file.read_text(encoding="utf-8"))
    comparisons, verdicts = [], []
    for name, result in results.items():  # in the recipe's order
        found = comparisons_of(name, result)
        comparisons += found
        verdict = verdict_of(name, result)
        if verdict or not found:
            verdicts.append(verdict or f"{name}: {json.dumps(result, sort_keys=True)[:300]}")
    train_loss, eval_loss = loss_curves(run_dir / "train" / "log.jsonl")
    return EvalReport(comparisons, verdicts, train_loss, eval_loss, differing(run_dir))


def comparisons_of(name: str, result: dict) -> list[Comparison]:
    """Base-against-tuned numbers of the built-in result shapes."""
    if isinstance(result.get("base"), dict) and "perplexity" in result["base"]:
        return [Comparison(name, key, result["base"][key], result["tuned"][key], True)
                for key in ("loss", "perplexity")]
    if isinstance(result.get("metrics"), dict):
        return [Comparison(name, metric, shares["base"], shares["tuned"])
                for metric, shares in result["metrics"].items()]
    if result.get("win_rate") is not None:
        return [Comparison(name, "pairwise wins", result["loss_rate"], result["win_rate"])]
    return []


def verdict_of(name: str, result: dict) -> str:
    if result.get("measured") is False:
        return f"{name}: not measured: {result.get('reason', '')}"
    if "flagged" in result:
        change = 100 * result["perplexity_change"]
        limit = 100 * result["max_increase"]
        if result["flagged"]:
            return (f"{name}: FLAGGED: perplexity on held-out general data rose {change:.1f}%,"
                    f" past max_increase {limit:.1f}%")
        return (f"{name}: ok: perplexity on held-out general data changed {change:+.1f}%"
                f" (max_increase {limit:.1f}%)")
    if isinstance(result.get("labels"), dict):
        return f"{name}: right answers per label, base → tuned: " + "; ".join(
            f"{label} {counts['base']['correct']} → {counts['tuned']['correct']} of"
            f" {counts['references']}" for label, counts in result["labels"]["per_label"].items()
        ) + (f"; no label at all {result['labels']['no_label']['base']} →"
             f" {result['labels']['no_label']['tuned']}")
    if "win_rate" in result:
        consistency = result.get("position_consistency")
        agreed = "" if consistency is None else f"; both orders agreed on {consistency:.0%}"
        unjudged = "; no pair judged, so no win rate" if result["win_rate"] is None else ""
        return (f"{name}: tuned won {result['tuned']}, lost {result['base']}, tied"
                f" {result['tie']} and {result['inconsistent']} inconsistent (the two orders"
                f" disagreed) of {result['pairs']} pairs; {result['malformed']} malformed"
                f" judgements{agreed}{unjudged}")
    return ""


def loss_curves(log: Path) -> tuple[list, list]:
    """(step, loss) and (step, eval loss) points of the training log."""
    if not log.is_file():
        return [], []
    entries = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line]
    return ([(e["step"], e["loss"]) for e in entries if "loss" in e and "step" in e],
            [(e["step"], e["eval_loss"]) for e in entries if "eval_loss" in e and "step" in e])


def differing(run_dir: Path) -> list[dict]:
    """The first EXAMPLES samples whose base and tuned answers differ."""
    path = run_dir / "eval" / "samples.jsonl"
    if not path.is_file():
        return []
    rows = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line)
    found = [row for row in rows if row.get("base") != row.get("tuned")]
    return found[:EXAMPLES]


def verdict_text(verdicts: dict) -> str:
    """A sample's verdicts in short: "exact ✗→✓, judge: tuned"."""
    parts = []
    for evaluation, verdict in sorted(verdicts.items()):
        if "outcome" in verdict:
            parts.append(f"{evaluation}: {verdict['outcome']}")
            continue
        for metric, sides in sorted(verdict.items()):
            if isinstance(sides, dict):
                parts.append(f"{metric} {_mark(sides.get('base'))}→{_mark(sides.get('tuned'))}")
    return ", ".join(parts)


def _mark(value) -> str:
    return "✓" if value else "✗"


def number(value: float, metric: str) -> str:
    return f"{value:.4g}" if metric in ("loss", "perplexity") else f"{value:.1%}"


def change(comparison: Comparison) -> str:
    difference = comparison.tuned - comparison.base
    if comparison.metric in ("loss", "perplexity"):
        relative = difference / comparison.base if comparison.base else 0.0
        return f"{relative:+.1%}"
    return f"{100 * difference:+.1f} pp"


def html_section(evaluation: EvalReport | None) -> tuple[str, str, str] | None:
    from curate.plugins.report_html import h, table

    if evaluation is None:
        return None
    rows = [[h(c.evaluation), h(c.metric), number(c.base, c.metric), number(c.tuned, c.metric),
             change(c)] for c in evaluation.comparisons]
    parts = [table(["evaluation", "metric", "base", "tuned", "change"], rows, "..nnn")] if rows \
        else []
    parts += [f"<p>{h(verdict)}</p>" for verdict in evaluation.verdicts]
    if evaluation.train_loss or evaluation.eval_loss:
        parts.append("<h3>Loss while training</h3>" + line_chart(
            "Training and eval loss by step", [("train loss", TRAIN_LOSS, evaluation.train_loss),
                                               ("eval loss", EVAL_LOSS, evaluation.eval_loss)]))
    if evaluation.examples:
        examples = [[h(e.get("prompt"), 300), h(e.get("reference"), 300), h(e.get("base"), 300),
                     h(e.get("tuned"), 300), h(verdict_text(e.get("verdicts", {})))]
                    for e in evaluation.examples]
        parts.append(f"<h3>Where base and tuned answered differently</h3>"
                     f'<p class="note">The first {EXAMPLES} such held-out prompts.</p>'
                     + table(["prompt", "reference", "base", "tuned", "verdicts"], examples,
                             "tttt."))
    return "evaluation", "Evaluation", "\n".join(parts)


def markdown_section(evaluation: EvalReport | None) -> str:
    from curate.plugins.report_markdown import md, table

    if evaluation is None:
        return ""
    rows = [[md(c.evaluation), md(c.metric), number(c.base, c.metric),
             number(c.tuned, c.metric), change(c)] for c in evaluation.comparisons]
    parts = ["## Evaluation"]
    if rows:
        parts.append(table(["evaluation", "metric", "base", "tuned", "change"], rows,
                           ":--|:--|--:|--:|--:"))
    parts += [md(verdict) for verdict in evaluation.verdicts]
    if evaluation.examples:
        examples = [[md(e.get("prompt"), 60), md(e.get("reference"), 60), md(e.get("base"), 60),
                     md(e.get("tuned"), 60), md(verdict_text(e.get("verdicts", {})))]
                    for e in evaluation.examples]
        parts.append("Where base and tuned answered differently:\n\n" + table(
            ["prompt", "reference", "base", "tuned", "verdicts"], examples))
    return "\n\n".join(parts)
