"""What the `consistency` stage keeps between its two passes (the ledger: a few numbers and
short snippets per record, in compact arrays) and what its whole-data rules find (findings)."""

from __future__ import annotations

from array import array
from dataclasses import dataclass

from curate.records import Record

from curate.plugins.consistency_text import snippet


class Ledger:
    """What the first pass keeps of each record, by input position: hashes of its comparison
    keys, its length, its source and a short snippet (~500 bytes a record in all)."""

    def __init__(self):
        self.ids: list[str] = []
        self.locally_rejected = array("b")
        self.prompts, self.answers, self.systems = array("Q"), array("Q"), array("Q")
        self.lengths, self.sources = array("q"), array("q")
        self.answer_snippets: list[str] = []
        self.labels: list[str | None] = []
        self.source_names: dict[str, int] = {}
        self.system_snippets: dict[int, str] = {}
        self.system_counts: dict[tuple[int, int], list[int]] = {}  # -> [count, first index]

    def __len__(self) -> int:
        return len(self.ids)

    def add_record(self, record: Record, length: int, system: int, rejected: bool) -> None:
        source = self.source_names.setdefault(record.source, len(self.source_names))
        self.ids.append(record.id)
        self.locally_rejected.append(rejected)
        self.sources.append(source)
        self.lengths.append(length)
        self.systems.append(system)
        if system not in self.system_snippets:
            self.system_snippets[system] = snippet(record.system, 120)
        if not rejected:
            self.system_counts.setdefault((source, system), [0, len(self) - 1])[0] += 1

    def add_answer(self, prompt: int, answer: int, shown: str, label: str | None) -> None:
        self.prompts.append(prompt)
        self.answers.append(answer)
        self.answer_snippets.append(shown)
        self.labels.append(label)

    def prompt_contexts(self, includes_system: bool):
        """Per record, what must also match for two prompts to be one question: the system
        prompt's hash, or 0 for all when system prompts do not count."""
        import numpy as np

        systems = np.frombuffer(self.systems, dtype=np.uint64) if len(self) else np.zeros(
            0, dtype=np.uint64)
        return systems if includes_system else np.zeros_like(systems)


@dataclass
class Finding:
    """What a whole-data rule found about one record; `rejects` False means flag only."""

    rule: str
    detail: str
    evidence: dict
    rejects: bool

    def note(self) -> dict:
        """The shape kept in record.meta["consistency"] (read by the quality report)."""
        note = {"rule": self.rule, "detail": self.detail, "other_id": self.evidence.get("other_id")}
        if "other_answer" in self.evidence:
            note["other_answer"] = self.evidence["other_answer"]
        return note
