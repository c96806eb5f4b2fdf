"""How the rehearsal stage screens the general pool and draws from it.

`TaskScreen` watches the task records stream past and notes, for each pool record, the closest
task record whose prompt it copies. `PoolDraw` then walks the pool in seeded-hash order: a record
that copies a task prompt or an already drawn pool prompt is rejected with the evidence; the
first clean ones fill the held-out slice, the next ones the training draw, until the target is
met. Records after that are never drawn: counted, not added.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from curate.plugins.rehearsal_index import Match, PromptIndex, text_similarity
from curate.records import Added, Record, Rejection

REHEARSAL = "rehearsal"
PREFETCH = 512


@dataclass(frozen=True)
class TaskCopy:
    """A task record whose prompt a pool record copies, and how closely."""

    task_id: str
    similarity: float
    method: str
    response_similarity: float


class TaskScreen:
    """The closest task record (by prompt, then response) that each pool record copies."""

    def __init__(self, index: PromptIndex | None, pool: list[Record]):
        self.index, self.pool = index, pool
        self.copies: dict[int, TaskCopy] = {}

    def add(self, batch: list[Record]) -> None:
        if self.index is None:
            return
        for match in self.index.matches([record.prompt for record in batch]):
            self._note(batch[match.query], match)

    def _note(self, task: Record, match: Match) -> None:
        response = text_similarity(task.response, self.pool[match.pool].response)
        copy = TaskCopy(task.id, match.similarity, match.method, response)
        known = self.copies.get(match.pool)
        if known is None or (copy.similarity, response) > (known.similarity,
                                                           known.response_similarity):
            self.copies[match.pool] = copy


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

    def outcomes(self, target: Target, seed: int) -> list[Added]:
        """The pool records considered, in seeded order: rejected, held out, or drawn."""
        added: list[Added] = []
        accepted: set[int] = set()
        accepted_keys: dict[bytes, int] = {}
        order = draw_order(self.pool, seed)
        for step, position in enumerate(order):
            if self._satisfied(target):
                break
            if step % PREFETCH == 0:
                self.index.prefetch(order[step:step + PREFETCH], with_neighbours=True)
            verdict = self._screen(position, accepted, accepted_keys)
            if verdict is None and self._overshoots(position, target):
                break
            self.counts.considered += 1
            if verdict is not None:
                added.append(Added(verdict))
                continue
            added.append(Added(self._take(position, target)))
            accepted.add(position)
            accepted_keys.setdefault(self.index.key(position), position)
        self.exhausted = not self._satisfied(target)
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

    def _screen(self, position: int, accepted: set[int],
                accepted_keys: dict[bytes, int]) -> Rejection | None:
        record = self.pool[position]
        copy = self.copies.get(position)
        if copy is not None:
            return self._task_rejection(record, copy)
        earlier = self.index.pool_duplicate(position, accepted_keys, accepted)
        if earlier is None:
            return None
        self.counts.duplicates += 1
        other = self.pool[earlier.pool].id
        how = _measured(earlier.similarity, earlier.method, self.threshold)
        return Rejection(record, "rehearsal-duplicate", f"its prompt copies that of general"
                         f" record {other}, drawn before it ({how})",
                         evidence={"duplicate_of": other, "similarity": earlier.similarity,
                                   "method": earlier.method, "compare": "prompt"})

    def _task_rejection(self, record: Record, copy: TaskCopy) -> Rejection:
        evidence = {"task_record": copy.task_id, "similarity": copy.similarity,
                    "response_similarity": round(copy.response_similarity, 6),
                    "method": copy.method, "threshold": self.threshold}
        prompt = _measured(copy.similarity, copy.method, self.threshold)
        if copy.response_similarity >= self.threshold:
            self.counts.duplicates += 1
            return Rejection(record, "rehearsal-duplicate",
                             f"copy of task record {copy.task_id}: prompt {prompt}, response"
                             f" {copy.response_similarity:.3f} similar",
                             evidence={**evidence, "compare": "prompt+response"})
        self.counts.contaminated += 1
        return Rejection(record, "rehearsal-contamination",
                         f"its prompt copies that of task record {copy.task_id} ({prompt}),"
                         f" with another answer ({copy.response_similarity:.3f} similar): any"
                         f" task prompt may be held out for eval, so it cannot train",
                         evidence={**evidence, "compare": "prompt"})

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


def _measured(similarity: float, method: str, threshold: float) -> str:
    if method == "exact":
        return "equal after normalising case, spacing and punctuation"
    return f"Jaccard {similarity:.3f} >= {threshold:g} on character 5-grams"


def draw_order(pool: list[Record], seed: int) -> list[int]:
    """Pool positions in seeded-hash order of their ids: the same pool and seed, the same draw,
    and adding rows to the pool leaves most of the draw in place."""
    def rank(position: int) -> tuple[str, int]:
        text = f"{seed}:{REHEARSAL}:{pool[position].id}"
        return hashlib.sha256(text.encode()).hexdigest(), position

    return sorted(range(len(pool)), key=rank)
