"""How the rehearsal stage screens the general pool and draws from it.

`TaskScreen` watches the task records stream past and notes, for each pool record, the closest
task record whose prompt (in its prompt or one user turn) or answer it copies. `PoolDraw` then
walks the pool in seeded-hash order: a record with an empty answer, or that copies a task
record or an already drawn pool prompt, is rejected with the evidence; the first clean ones
fill the held-out slice, the next ones the training draw, until the target is met. Records
after that are never drawn: counted, not added.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from curate.plugins.rehearsal_index import MIN_CONTAINED, Match, PromptIndex, text_similarity
from curate.records import Added, Record, Rejection

REHEARSAL = "rehearsal"
PREFETCH = 512


@dataclass(frozen=True)
class TaskCopy:
    """A record of the run (a task record, or a general one from an earlier rehearsal step)
    whose prompt or answer a pool record copies, and how closely."""

    task_id: str
    similarity: float
    method: str
    response_similarity: float
    measure: str = "jaccard"
    part: str = "prompt"
    """The pool record's text that copies: "prompt", "user turn 2", or "response" (its answer
    copies the record's answer, whatever its prompt)."""
    kind: str = "task record"

    def rank(self) -> tuple:
        return self.part != "response", self.similarity, self.response_similarity


class TaskScreen:
    """The closest record of the run that each pool record copies: its prompt (or one user
    turn) contains the record's prompt, or its answer is a near copy of the record's answer."""

    def __init__(self, index: PromptIndex | None, pool: list[Record],
                 responses: PromptIndex | None = None):
        self.index, self.pool, self.responses = index, pool, responses
        self.copies: dict[int, TaskCopy] = {}

    def add(self, batch: list[Record]) -> None:
        if self.index is None:
            return
        best: dict[int, list[Match]] = {}
        for match in self.index.matches([record.prompt for record in batch]):
            known = best.setdefault(match.pool, [match])
            if match.similarity > known[0].similarity:
                best[match.pool] = [match]
            elif match.similarity == known[0].similarity and match is not known[0]:
                known.append(match)
        for matches in best.values():  # the answers are compared for the closest prompts only
            for match in matches:
                self._note(batch[match.query], match)
        if self.responses is not None:
            texts = [record.response for record in batch]
            for match in self.responses.matches(texts, min_shingles=MIN_CONTAINED):
                self._note_answer(batch[match.query], match)

    def _note(self, task: Record, match: Match) -> None:
        response = text_similarity(task.response, self.pool[match.pool].response)
        self._keep(match.pool, TaskCopy(task.id, match.similarity, match.method, response,
                                        match.measure, match.part, _kind(task)))

    def _note_answer(self, task: Record, match: Match) -> None:
        self._keep(match.pool, TaskCopy(task.id, match.similarity, match.method,
                                        match.similarity, match.measure, "response",
                                        _kind(task)))

    def _keep(self, position: int, copy: TaskCopy) -> None:
        known = self.copies.get(position)
        if known is None or copy.rank() > known.rank():
            self.copies[position] = copy


def _kind(record: Record) -> str:
    if record.origin != REHEARSAL:
        return "task record"
    if record.meta.get(REHEARSAL) == "held-out":
        return "held-out general record"
    return "general record"


@dataclass
class Target:
    """What to draw: `held_out` records for the forgetting check, then general records for
    training until `wanted` examples (or tokens) are reached."""

    held_out: int
    wanted: float
    count: str
    tokens: object = None
    """For count = "tokens": a function giving a record's tokens."""


@dataclass
class DrawCounts:
    considered: int = 0
    duplicates: int = 0
    contaminated: int = 0
    empty: int = 0
    held_out: int = 0
    drawn: int = 0
    drawn_tokens: int = 0


@dataclass
class PoolDraw:
    index: PromptIndex | None
    pool: list[Record]
    copies: dict[int, TaskCopy]
    threshold: float
    counts: DrawCounts = field(default_factory=DrawCounts)
    exhausted: bool = False
    """The seeded order ran out before the target was met."""
    overshoot: int | None = None
    """In tokens, the size of the record that ended the draw short of the target."""

    def outcomes(self, target: Target, seed: int) -> list[Added]:
        """The pool records considered, in seeded order: rejected, held out, or drawn."""
        added: list[Added] = []
        order = draw_order(self.pool, seed)
        for step, position in enumerate(order):
            if self._satisfied(target):
                break
            if step % PREFETCH == 0:
                self.index.prefetch(order[step:step + PREFETCH])
            verdict = self._screen(position)
            if verdict is None and self._overshoots(position, target):
                self.overshoot = target.tokens(self.pool[position])
                break
            self.counts.considered += 1
            if verdict is not None:
                added.append(Added(verdict))
                continue
            added.append(Added(self._take(position, target)))
            self.index.accept(position)
        self.exhausted = self.overshoot is None and not self._satisfied(target)
        return added

    def _satisfied(self, target: Target) -> bool:
        drawn = self.counts.drawn_tokens if target.count == "tokens" else self.counts.drawn
        return self.counts.held_out >= target.held_out and drawn >= target.wanted

    def _overshoots(self, position: int, target: Target) -> bool:
        """In tokens, a record that would take the draw further past the target than it is
        short of it ends the draw."""
        if target.count != "tokens" or self.counts.held_out < target.held_out:
            return False
        short = target.wanted - self.counts.drawn_tokens
        return target.tokens(self.pool[position]) - short > short

    def _screen(self, position: int) -> Rejection | None:
        record = self.pool[position]
        if not record.response.strip():
            self.counts.empty += 1
            return Rejection(record, "empty-response", "its answer (the assistant turns) is"
                             " empty or blank: it would teach the model to say nothing",
                             evidence={"response_characters": len(record.response)})
        copy = self.copies.get(position)
        if copy is not None:
            return self._task_rejection(record, copy)
        earlier = self.index.pool_duplicate(position)
        if earlier is None:
            return None
        self.counts.duplicates += 1
        other = self.pool[earlier.pool].id
        how = _measured(earlier.similarity, earlier.method, "jaccard", self.threshold)
        return Rejection(record, "rehearsal-duplicate", f"its prompt copies the prompt of"
                         f" general record {other}, drawn before it ({how})",
                         evidence={"duplicate_of": other, "similarity": earlier.similarity,
                                   "method": earlier.method, "compare": "prompt"})

    def _task_rejection(self, record: Record, copy: TaskCopy) -> Rejection:
        evidence = {"task_record": copy.task_id, "copied_record": copy.kind,
                    "similarity": copy.similarity,
                    "response_similarity": round(copy.response_similarity, 6),
                    "method": copy.method, "measure": copy.measure, "part": copy.part,
                    "threshold": self.threshold}
        how = _measured(copy.similarity, copy.method, copy.measure, self.threshold)
        why = ("it is kept for the forgetting check, so it cannot train"
               if copy.kind == "held-out general record" else
               "any task record may be held out for eval, so it cannot train")
        if copy.kind == "general record":
            self.counts.duplicates += 1
            text = "answer copies the answer" if copy.part == "response" else \
                f"{copy.part} copies the prompt"
            return Rejection(record, "rehearsal-duplicate", f"its {text} of general record"
                             f" {copy.task_id}, drawn by an earlier rehearsal step ({how})",
                             evidence={**evidence, "compare": _compared(copy.part)})
        if copy.part == "response":
            self.counts.contaminated += 1
            return Rejection(record, "rehearsal-contamination",
                             f"its answer copies the answer of {copy.kind} {copy.task_id}"
                             f" ({how}): {why}", evidence={**evidence, "compare": "response"})
        if copy.response_similarity >= self.threshold:
            self.counts.duplicates += 1
            return Rejection(record, "rehearsal-duplicate",
                             f"copy of {copy.kind} {copy.task_id}: {copy.part} {how}, response"
                             f" {copy.response_similarity:.3f} similar",
                             evidence={**evidence, "compare": "prompt+response"})
        self.counts.contaminated += 1
        return Rejection(record, "rehearsal-contamination",
                         f"its {copy.part} copies the prompt of {copy.kind} {copy.task_id}"
                         f" ({how}), with another answer ({copy.response_similarity:.3f}"
                         f" similar): {why}", evidence={**evidence, "compare": "prompt"})

    def _take(self, position: int, target: Target) -> Record:
        record = self.pool[position]
        held = self.counts.held_out < target.held_out
        if held:
            self.counts.held_out += 1
        else:
            self.counts.drawn += 1
            if target.tokens is not None:
                self.counts.drawn_tokens += target.tokens(record)
        record.meta = {**record.meta, REHEARSAL: "held-out" if held else "train"}
        return record


def _compared(part: str) -> str:
    return "response" if part == "response" else "prompt"


def _measured(similarity: float, method: str, measure: str, threshold: float) -> str:
    if method == "exact":
        return "equal after normalising case, spacing and punctuation"
    if measure == "containment":
        return (f"containing {similarity:.3f} of the copied text's character 5-grams, >="
                f" {threshold:g}")
    return f"Jaccard {similarity:.3f} >= {threshold:g} on character 5-grams"


def draw_order(pool: list[Record], seed: int) -> list[int]:
    """Pool positions in seeded-hash order of their ids: the same pool and seed, the same draw,
    and adding rows to the pool leaves most of the draw in place."""
    def rank(position: int) -> tuple[str, int]:
        text = f"{seed}:{REHEARSAL}:{pool[position].id}"
        return hashlib.sha256(text.encode()).hexdigest(), position

    return sorted(range(len(pool)), key=rank)
