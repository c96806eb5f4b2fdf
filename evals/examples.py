"""Held-out examples as the evaluations use them, and `eval/samples.jsonl`: what base and tuned
answered to each prompt, with every evaluation's verdicts, for the report's examples."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from curate.errors import CurateError, did_you_mean

SAMPLES_FILE = "samples.jsonl"


@dataclass
class EvalExample:
    id: str
    source: str
    line: int
    """Its line in the dataset file, for error messages."""
    messages: list[dict]
    """The whole conversation (for the loss)."""
    prompt: list[dict]
    """The conversation up to its last assistant turn (for generation)."""
    reference: str
    """The last assistant turn: the answer the data expects."""

    @property
    def question(self) -> str:
        """The last user turn, to show in results and to a judge."""
        users = [m.get("content") or "" for m in self.prompt if m.get("role") == "user"]
        return users[-1] if users else ""


def read_examples(file: Path, sources: list[str] | None = None) -> list[EvalExample]:
    """The file's conversations that end in an assistant turn (from `sources` only, when
    given)."""
    if not file.is_file():
        return []
    examples = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        messages = row.get("messages") or []
        last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"),
                   default=None)
        if last is None or (sources and row.get("source") not in sources):
            continue
        examples.append(EvalExample(str(row.get("id", number)), str(row.get("source", "")),
                                    number, messages[:last + 1], messages[:last],
                                    messages[last].get("content") or ""))
    return examples


def require_examples(examples: list[EvalExample], file: Path,
                     sources: Sequence[str] = ()) -> None:
    """Raise a CurateError naming the fix when there is nothing to evaluate on: a source
    name that holds no held-out example, or no held-out examples at all."""
    if examples:
        return
    held_out = sorted({example.source for example in read_examples(file)})
    if sources and held_out:
        wrong = ", ".join(sources)
        hints = "".join(did_you_mean(name, held_out) for name in sources if name not in held_out)
        raise CurateError(f"{file}: no held-out example comes from sources {wrong}{hints}"
                          f" (the held-out examples come from {', '.join(held_out)}): fix the"
                          f" [[evals]] sources, or hold out more examples with [split]"
                          f" eval_size")
    raise CurateError(f"{file}: no held-out examples to evaluate on: give the recipe's [split]"
                      f" an eval_size or eval_fraction above 0")


def record_samples(run_dir: Path, evaluation: str, digest: str, rows: list[dict]) -> None:
    """Merge rows ({"id", ...answers, "verdicts": {...}}) of one evaluation into
    samples.jsonl, keeping what other evaluations wrote about the same adapter."""
    from curate.runstore import AtomicTextWriter, dumps

    path = run_dir / "eval" / SAMPLES_FILE
    merged = {row["id"]: row for row in read_samples(run_dir) if row.get("adapter") == digest}
    for row in rows:
        sample = merged.setdefault(row["id"], {"id": row["id"], "adapter": digest,
                                               "verdicts": {}})
        sample.update({key: value for key, value in row.items() if key != "verdicts"})
        sample["verdicts"][evaluation] = row.get("verdicts", {})
    with AtomicTextWriter(path) as writer:
        for sample in merged.values():
            writer.write(dumps(sample) + "\n")


def read_samples(run_dir: Path) -> list[dict]:
    path = run_dir / "eval" / SAMPLES_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
