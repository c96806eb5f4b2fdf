"""`task-metrics`: did the fine-tune help the task? Base and tuned answer the held-out prompts
(greedy, with the chat template), and each answer is judged against the reference answer by the
metrics chosen (exact, contains, regex, labels, json: see `curate.evals.metrics`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from curate.errors import CurateError, did_you_mean
from curate.evals.examples import EvalExample, read_examples, record_samples, require_examples
from curate.evals.metrics import METRICS, Scoring, summarise
from curate.options import OptionError, option
from curate.training import Evaluation, TrainContext


@dataclass
class TaskMetricsOptions:
    metrics: list[str] = option(["exact", "contains"], help="any of exact, contains, regex,"
                                                             " labels, json")
    labels: list[str] = option([], help="the classes of a classification task, for `labels`")
    pattern: str = option("", help="a regular expression answers should match, for `regex`")
    json_schema: dict[str, Any] = option({}, help="a JSON schema answers should fit, for `json`"
                                                  " (empty: any valid JSON)")
    ignore_case: bool = option(True, help="compare text and labels ignoring letter case")
    sources: list[str] = option([], help="only held-out examples from these sources (e.g. the"
                                         " classification source of a mixed dataset)")
    max_examples: int | None = option(None, min=1, help="evaluate on the first N held-out"
                                                        " examples only")
    max_new_tokens: int = option(128, min=1, help="longest answer generated, in tokens")
    batch_size: int = option(8, min=1, help="prompts generated at once")


class TaskMetricsEval(Evaluation):
    name = "task-metrics"
    Options = TaskMetricsOptions
    version = "1"
    uses_eval_split = True

    @classmethod
    def check_options(cls, options: TaskMetricsOptions) -> None:
        if not options.metrics:
            raise OptionError("metrics", f"name at least one metric ({', '.join(METRICS)})")
        for metric in options.metrics:
            if metric not in METRICS:
                raise OptionError("metrics", f"unknown metric '{metric}'"
                                             f"{did_you_mean(metric, METRICS)} (known:"
                                             f" {', '.join(METRICS)})")
        if "labels" in options.metrics and not options.labels:
            raise OptionError("labels", "the `labels` metric needs the classes: labels ="
                                        " [\"positive\", \"negative\"]")
        if "regex" in options.metrics and not options.pattern:
            raise OptionError("pattern", "the `regex` metric needs a pattern = \"...\"")
        problem = schema_problem(options.json_schema)
        if problem:
            raise OptionError("json_schema", problem)
        scoring(options)

    def evaluate(self, options: TaskMetricsOptions, context: TrainContext) -> dict:
        from curate.evals.generation import answers
        from curate.evals.model import load_tuned

        examples = read_examples(context.eval_file, options.sources)[:options.max_examples]
        require_examples(examples, context.eval_file, options.sources)
        rules = scoring(options)
        check_reference_labels(rules, examples, context)
        tuned = load_tuned(context.run_dir)
        said = answers(tuned, examples, options.max_new_tokens, options.batch_size,
                       context.log)
        verdicts = [example_verdicts(rules, said, index, example.reference)
                    for index, example in enumerate(examples)]
        result = {"examples": len(examples),
                  **summarise(rules, verdicts, said, [e.reference for e in examples])}
        record_samples(context.run_dir, context.evaluation or self.name, tuned.digest,
                       sample_rows(examples, said, verdicts))
        for metric, shares in result["metrics"].items():
            context.log(f"task-metrics: {metric} {shares['base']:.1%} -> {shares['tuned']:.1%}"
                        f" on {len(examples):,} examples")
        return result


def scoring(options: TaskMetricsOptions) -> Scoring:
    pattern = None
    if options.pattern:
        try:
            pattern = re.compile(options.pattern, re.IGNORECASE if options.ignore_case else 0)
        except re.error as error:
            raise OptionError("pattern", f"{options.pattern!r} is not a valid regular"
                                         f" expression: {error}") from None
    return Scoring(list(options.metrics), options.ignore_case, pattern, list(options.labels),
                   options.json_schema or None)


SCHEMA_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")


def schema_problem(schema: Any, where: str = "") -> str | None:
    """What is wrong with a JSON schema as `json_problem` reads it, or None: checked before
    any generation, since a typo such as type = "strng" would let every answer pass. `where` is
    the path inside the schema ("properties.name.")."""
    if not isinstance(schema, dict):
        return f"{where.rstrip('.') or 'the schema'} must be a table, found {schema!r}"
    kind = schema.get("type")
    if kind is not None and kind not in SCHEMA_TYPES:
        return (f"{where}type: unknown type {kind!r}{did_you_mean(str(kind), SCHEMA_TYPES)}"
                f" (known: {', '.join(SCHEMA_TYPES)})")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(key, str) for key in required):
        return f"{where}required must be a list of key names, found {required!r}"
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        return f"{where}properties must be a table of key = schema, found {properties!r}"
    parts = [(f"{where}properties.{key}.", sub) for key, sub in properties.items()]
    if "items" in schema:
        parts.append((f"{where}items.", schema["items"]))
    return next((p for p in (schema_problem(sub, at) for at, sub in parts) if p), None)


def check_reference_labels(rules: Scoring, examples: list[EvalExample],
                           context: TrainContext) -> None:
    if "labels" not in rules.metrics:
        return
    for example in examples:
        if rules.label_of(example.reference) is None:
            raise CurateError(
                f"{context.eval_file}:{example.line}: the reference answer"
                f" {example.reference[:60]!r} is none of the labels ({', '.join(rules.labels)}):"
                f" add its label to the [[evals]] labels, or evaluate only the classification"
                f" data with sources = [\"...\"]")


def example_verdicts(rules: Scoring, said: dict[str, list[str]], index: int,
                     reference: str) -> dict[str, dict[str, bool]]:
    """{metric: {"base": verdict, "tuned": verdict}} for one example."""
    by_side = {side: rules.judge(texts[index], reference) for side, texts in said.items()}
    return {metric: {side: by_side[side][metric] for side in said} for metric in rules.metrics}


def sample_rows(examples: list[EvalExample], said: dict[str, list[str]],
                verdicts: list[dict]) -> list[dict]:
    return [{"id": e.id, "source": e.source, "prompt": e.question, "reference": e.reference,
             "base": said["base"][i], "tuned": said["tuned"][i], "verdicts": verdicts[i]}
            for i, e in enumerate(examples)]
