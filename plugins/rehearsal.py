"""The `rehearsal` stage: mixes general-purpose examples into the task data, so fine-tuning on a
narrow task forgets less of what the model could do.

Every task record passes through unchanged. From a general pool (any source plugin: a local
file, a `datasets` dataset) the stage draws, in seeded order, enough records that they make up
`ratio` of the final training set, in examples or in tokens, and adds them with origin
"rehearsal". Pool records whose prompt or a user turn contains a task prompt, or whose answer
copies a task answer (exactly after normalisation, or nearly by MinHash with the similarity
measured), are rejected, since any task record may be held out for eval; so are copies of a
record already drawn, and records with an empty answer. A held-out slice of the pool goes to
`dataset/general_eval.jsonl` for the forgetting check, never to training.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any, Literal

from curate import hookimpl
from curate.options import OptionError, option
from curate.records import Added, Record
from curate.stages import Stage

UNREADABLE_SHOWN = 20
BATCH = 512
REHEARSAL = "rehearsal"


@hookimpl
def register_stages(register):
    register(RehearsalMixer)


@dataclass
class RehearsalOptions:
    source: dict[str, Any] = option(help="the general pool, a source table like a [[sources]]"
                                         " entry: use = \"jsonl\", path = \"general.jsonl\","
                                         " format = \"alpaca\" (or use = \"datasets\", ...)")
    ratio: float = option(0.15, min=0.0, max=0.5, help="share of the final training set that is"
                                                       " general data")
    count: Literal["examples", "tokens"] = option("examples", help="measure the ratio in"
                                                  " examples, or in tokens with the recipe's"
                                                  " [model] tokenizer")
    held_out: int | float = option(200, min=0, help="general records kept out of training for"
                                                    " the forgetting check: a number (200) or a"
                                                    " fraction of the pool below 1 (0.05)")
    near_threshold: float = option(0.7, min=0.01, max=1.0, help="similarity of character"
                                   " 5-grams at which a pool prompt (or user turn) copies a task"
                                   " prompt, by containment, or an answer or another pool"
                                   " prompt, by Jaccard")


class RehearsalMixer(Stage):
    name = "rehearsal"
    Options = RehearsalOptions
    version = "3"  # 3: containment, user turns and answers screened; no bucket cap; empty answers
    adds_origin = "rehearsal"
    source_keys = ("source",)

    @classmethod
    def check_options(cls, options: RehearsalOptions) -> None:
        origin = options.source.get("origin", REHEARSAL)
        if origin != REHEARSAL:
            raise OptionError("source.origin", f"general records always have origin"
                              f" '{REHEARSAL}', found {origin!r}: remove source.origin")
        held = options.held_out
        if isinstance(held, float) and held >= 1 and not held.is_integer():
            raise OptionError("held_out", f"expected a whole number of records (200) or a"
                              f" fraction below 1 (0.05), found {held}")

    @classmethod
    def needs_model(cls, options: RehearsalOptions) -> bool:
        return options.count == "tokens"

    @classmethod
    def needs_split(cls, options: RehearsalOptions) -> bool:
        return True

    def process(self, records: Iterable[Record]) -> Iterator[Record | Added]:
        from curate.plugins.rehearsal_draw import PoolDraw, TaskScreen
        from curate.plugins.rehearsal_index import PromptIndex

        self._stats: dict = {}
        if self.options.ratio == 0 and self.options.held_out == 0:
            yield from records
            return
        pool, rows, problems = self._read_pool()
        threshold = self.options.near_threshold
        index = PromptIndex([r.prompt for r in pool], threshold, user_turns(pool)) if pool else None
        answers = PromptIndex([r.response for r in pool], threshold, part="response",
                              contain=False) if pool else None
        screen = TaskScreen(index, pool, answers)
        tally = TaskTally(self._token_counter())
        iterator = iter(records)
        for batch in iter(lambda: list(islice(iterator, BATCH)), []):
            screen.add(batch)
            tally.add(batch)
            yield from batch
        draw = PoolDraw(index, pool, screen.copies, self.options.near_threshold)
        task_train, general = tally.train_totals(self.context.split, self.context.seed)
        target = self._target(task_train, general, len(pool), tally.count_tokens)
        yield from draw.outcomes(target, self.context.seed)
        self._stats = self._plan(len(tally.task_keys), task_train, target, draw,
                                 {"rows": rows, "unreadable": len(problems),
                                  "unreadable_rows": problems[:UNREADABLE_SHOWN],
                                  "records": len(pool)})
        self._warn_held_out(target.held_out, draw.counts)

    def _warn_held_out(self, wanted: int, counts) -> None:
        if counts.held_out < wanted:
            self.context.log(f"warning: {self.context.name}: the held-out general slice has"
                             f" {counts.held_out:,} of the {wanted:,} records asked: the pool"
                             f" ran out ({counts.duplicates:,} duplicates,"
                             f" {counts.contaminated:,} too close to a task record,"
                             f" {counts.empty:,} with an empty answer): add general data or"
                             f" lower held_out")

    def summary(self) -> dict:
        return {REHEARSAL: self._stats} if getattr(self, "_stats", None) else {}

    def _read_pool(self) -> tuple[list[Record], int, list[str]]:
        """The pool's records, with origin "rehearsal"; the rows read; each row left out, as
        "location: why (reason)". Pool rows are not records of the run, so they are listed
        here (and in the step's stats) rather than rejected."""
        pool, rows, problems = [], 0, []
        for outcome in self.context.read_source("source"):
            rows += 1
            if isinstance(outcome, Record):
                outcome.origin = REHEARSAL
                pool.append(outcome)
            else:
                problems.append(f"{outcome.detail} ({outcome.reason})")
        if problems:
            self.context.log(f"warning: {self.context.name}: {len(problems):,} of {rows:,} pool"
                             f" rows left out, unreadable or unusable (first: {problems[0]});"
                             f" the step's stats list the first {UNREADABLE_SHOWN}")
        return pool, rows, problems

    def _token_counter(self):
        if self.options.count != "tokens":
            return None
        from curate.mixing import conversation_tokens

        counter = self.context.tokenizer()
        return lambda record: conversation_tokens(record, counter)

    def _target(self, task_train: int, general: int, pool_size: int, count_tokens):
        from curate.plugins.rehearsal_draw import Target

        held = self.options.held_out
        held_out = round(held * pool_size) if held < 1 else int(held)
        wanted = wanted_general(self.options.ratio, task_train, general)
        return Target(held_out, wanted, self.options.count, count_tokens)

    def _plan(self, task_records: int, task_train: int, target, draw, pool: dict) -> dict:
        """The step's stats: what was aimed at, and what became of the pool."""
        counts = draw.counts
        pool.update(considered=counts.considered, duplicates=counts.duplicates,
                    contaminated=counts.contaminated, empty_response=counts.empty,
                    held_out_wanted=target.held_out, held_out=counts.held_out,
                    drawn=counts.drawn, not_drawn=pool["records"] - counts.considered)
        plan = {"target_ratio": self.options.ratio, "count": self.options.count,
                "task_records": task_records, "wanted": target.wanted,
                "pool_exhausted": draw.exhausted, "pool": pool}
        if self.options.count == "tokens":
            pool["drawn_tokens"] = counts.drawn_tokens
            if draw.overshoot is not None:
                plan["overshoot_tokens"] = draw.overshoot
            plan["task_train_tokens"] = task_train
            plan["wanted"] = round(target.wanted)
        else:
            plan["task_train"] = task_train
        return plan


def user_turns(pool: list[Record]) -> list[tuple[int, str, str]]:
    """(pool position, "user turn N", text) for each user turn of the multi-turn pool records:
    a task prompt copied as one turn of a longer chat is screened on its own."""
    turns = []
    for position, record in enumerate(pool):
        texts = [m["content"] for m in record.messages if m["role"] == "user"]
        if len(texts) > 1:
            turns += [(position, f"user turn {n}", text) for n, text in enumerate(texts, 1)]
    return turns


class TaskTally:
    """The split keys (and tokens) of the records the stage passes through, to size the draw by
    the training split they will make."""

    def __init__(self, count_tokens):
        from curate.split import split_key

        self.count_tokens, self.split_key = count_tokens, split_key
        self.task_keys: list[str] = []
        """The split key (`curate.split.split_key`) of each task record, in order."""
        self.task_sizes: list[int] = []
        self.general = 0
        """Size of general records already in the input (an earlier rehearsal stage)."""

    def add(self, batch: list[Record]) -> None:
        for record in batch:
            size = self.count_tokens(record) if self.count_tokens else 1
            if record.origin != REHEARSAL:
                self.task_keys.append(self.split_key(record.messages))
                self.task_sizes.append(size)
            elif record.meta.get(REHEARSAL) != "held-out":
                self.general += size

    def train_totals(self, split, seed: int) -> tuple[int, int]:
        """(task size, general size) that will train, in examples or tokens: the split holds
        out task records only, chosen by question exactly as it will be."""
        from curate.recipe import SplitOptions
        from curate.split import choose_eval_keys

        held = choose_eval_keys(self.task_keys, split or SplitOptions(), seed)
        train = sum(size for key, size in zip(self.task_keys, self.task_sizes) if key not in held)
        return train, self.general


def wanted_general(ratio: float, task: int, general: int) -> float:
    """How much general data to add so that it is `ratio` of the training set. In examples, the
    whole number that comes closest."""
    exact = ratio / (1 - ratio) * task - general
    if exact <= 0:
        return 0
    low, high = math.floor(exact), math.ceil(exact)

    def gap(n: int) -> float:
        return abs((n + general) / (n + general + task) - ratio)

    return low if gap(low) < gap(high) else high
