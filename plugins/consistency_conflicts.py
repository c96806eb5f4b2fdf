"""The `conflicting-answer` rule of the `consistency` stage: records that ask one prompt (equal
after normalisation, or near-identical with `prompt_similarity` below 1.0) but answer it
differently, and the `on_conflict` policies: flag, majority (a tie is flagged), first,
reject-all, review. With `answer_pattern`, an answer it finds no label in is not compared with
labelled answers to its prompt but noted (`unlabelled-answer`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from curate.plugins.consistency_ledger import Finding, Ledger
from curate.plugins.consistency_text import snippet

if TYPE_CHECKING:
    from curate.plugins.consistency_near_prompts import NearPrompts

CONFLICT_RULE = "conflicting-answer"
UNLABELLED_RULE = "unlabelled-answer"
CONSEQUENCES = {"flag": "",
                "review": "; on_conflict = 'review' sends the group to the review queue",
                "majority": "; on_conflict = 'majority' keeps the other answer",
                "first": "; on_conflict = 'first' keeps the answer seen first",
                "reject-all": "; on_conflict = 'reject-all' rejects the whole group"}
TIE = ("; a tie: no answer has a majority, so on_conflict = 'majority' keeps the whole group"
       " (flagged)")


@dataclass
class Answer:
    """One distinct answer within a group of records asking the same prompt."""

    indices: list[int]

    @property
    def first(self) -> int:
        return self.indices[0]


@dataclass
class Group:
    answers: list[Answer]
    size: int
    tie: bool


def conflict_findings(ledger: Ledger, options: Any, near: NearPrompts | None = None
                      ) -> Iterator[tuple[int, Finding]]:
    """(record, finding) for every record the policy rejects or, under "flag", notes, and for
    every answer `answer_pattern` finds no label in among labelled answers to its prompt."""
    return ConflictingAnswers(ledger, options, near).findings()


class ConflictingAnswers:
    """Groups the ledger's records by prompt (`near` groups near-identical prompts too) and
    ranks each group's answers for the policy."""

    def __init__(self, ledger: Ledger, options: Any, near: NearPrompts | None):
        self.ledger, self.options, self.near = ledger, options, near
        self.unlabelled: list[tuple[int, int, int]] = []  # (record, a labelled one, labelled)

    def findings(self) -> Iterator[tuple[int, Finding]]:
        groups = [self.group(self.ranked(answers)) for answers in self.groups()]
        if self.near is not None:  # every similarity a finding shows, measured in one go
            self.near.measure([*((index, other.first) for group in groups
                                 for answer, other, _ in self.judged(group)
                                 for index in answer.indices),
                               *((index, labelled) for index, labelled, _ in self.unlabelled)])
        for group in groups:
            for answer, other, rejects in self.judged(group):
                for index in answer.indices:
                    yield index, self.finding(index, (answer, other, group), rejects)
        for index, labelled, count in self.unlabelled:
            yield index, self.unlabelled_finding(index, labelled, count)

    def ranked(self, answers: list[Answer]) -> list[Answer]:
        """The policy keeps the first of the ranked answers: by count then first seen, or for
        on_conflict = "first" by first seen alone."""
        if self.options.on_conflict == "first":
            return sorted(answers, key=lambda answer: answer.first)
        return sorted(answers, key=lambda answer: (-len(answer.indices), answer.first))

    def group(self, answers: list[Answer]) -> Group:
        """Ranked answers as a group; under "majority", two top answers equally common are a
        tie, which has no majority to keep."""
        tie = (self.options.on_conflict == "majority"
               and len(answers[0].indices) == len(answers[1].indices))
        return Group(answers, sum(len(answer.indices) for answer in answers), tie)

    def judged(self, group: Group) -> Iterator[tuple[Answer, Answer, bool]]:
        """(answer, the "other" answer it is shown against, whether it is rejected) for each
        answer the policy rejects or flags; the other answer of the kept one is the runner-up."""
        policy, answers = self.options.on_conflict, group.answers
        keeps_all = policy in ("flag", "review") or group.tie
        for answer in answers:
            other = answers[1] if answer is answers[0] else answers[0]
            rejects = not keeps_all and (policy == "reject-all" or answer is not answers[0])
            if rejects or keeps_all:
                yield answer, other, rejects

    def groups(self) -> Iterator[list[Answer]]:
        """The groups of records with one prompt and more than one answer, each as its answers."""
        import numpy as np

        ledger = self.ledger
        prompts = np.frombuffer(ledger.prompts, dtype=np.uint64) if len(ledger) else np.zeros(0)
        indices = np.flatnonzero(prompts != 0)
        if not len(indices):
            return
        groups = self.prompt_groups(prompts)[indices]
        if self.options.answer_pattern:
            indices, groups = self.set_aside_unlabelled(indices, groups)
        answers = np.frombuffer(ledger.answers, dtype=np.uint64)[indices]
        order = np.lexsort((indices, answers, groups))
        groups, answers, indices = groups[order], answers[order], indices[order]
        new_group = np.r_[True, groups[1:] != groups[:-1]]
        new_answer = new_group | np.r_[True, answers[1:] != answers[:-1]]
        starts = np.flatnonzero(new_group)
        ends = np.r_[starts[1:], len(groups)]
        distinct = np.add.reduceat(new_answer.astype(np.int64), starts)
        for start, end in zip(starts[distinct > 1].tolist(), ends[distinct > 1].tolist()):
            cuts = [*np.flatnonzero(new_answer[start:end]).tolist(), end - start]
            members = indices[start:end].tolist()
            yield [Answer(members[a:b]) for a, b in zip(cuts, cuts[1:])]

    def set_aside_unlabelled(self, indices, groups):
        """Takes the records whose answer has no label out of the groups that hold labelled
        answers (noting them in `unlabelled`): they cannot be compared with a label. Groups
        without any label compare whole answers, as without `answer_pattern`."""
        import numpy as np

        labels = self.ledger.labels
        labelled = np.fromiter((labels[index] is not None for index in indices.tolist()), bool,
                               len(indices))
        named, firsts, counts = np.unique(groups[labelled], return_index=True,
                                          return_counts=True)
        aside = ~labelled & np.isin(groups, named)
        at = np.searchsorted(named, groups[aside])
        self.unlabelled = list(zip(indices[aside].tolist(),
                                   indices[labelled][firsts[at]].tolist(), counts[at].tolist()))
        return indices[~aside], groups[~aside]

    def prompt_groups(self, prompts):
        """Each record's prompt group: its prompt hash, or with near-identical prompts on, its
        group's first record plus one (0 means "no prompt")."""
        if self.near is None:
            return prompts
        return self.near.groups(prompts, self.ledger.prompt_contexts(
            self.options.prompt_includes_system))

    def finding(self, index: int, answers: tuple[Answer, Answer, Group],
                rejects: bool) -> Finding:
        ledger, options = self.ledger, self.options
        mine, other, group = answers
        other_index = other.first
        similarity = self.similarity(index, other_index)
        detail = (f"answers {self.shown_answer(index)} but {ledger.ids[other_index]}"
                  f" ({self.shown_prompt(index, other_index, similarity)}) answers"
                  f" {self.shown_answer(other_index)}; {len(other.indices)} of {group.size}"
                  f" records agree with the other answer"
                  f"{TIE if group.tie else CONSEQUENCES[options.on_conflict]}")
        evidence = {**self.pair_evidence(CONFLICT_RULE, index, other_index),
                    "group_size": group.size,
                    "agreeing": len(mine.indices), "other_count": len(other.indices),
                    "answers": len(group.answers), "policy": options.on_conflict,
                    "prompt_similarity": round(similarity, 3)}
        if options.answer_pattern:
            evidence.update(label=ledger.labels[index], other_label=ledger.labels[other_index])
        evidence.update(self.prompt_words(index, other_index, similarity))
        return Finding(CONFLICT_RULE, detail, evidence, rejects)

    def unlabelled_finding(self, index: int, labelled: int, count: int) -> Finding:
        ledger = self.ledger
        similarity = self.similarity(index, labelled)
        detail = (f"answer_pattern finds no label in {snippet(ledger.answer_snippets[index])!r},"
                  f" so it is not compared with the {count} labelled answer"
                  f"{'s' if count > 1 else ''} to its prompt (e.g. {ledger.ids[labelled]}"
                  f" ({self.shown_prompt(index, labelled, similarity)}) answers"
                  f" {self.shown_answer(labelled)})")
        evidence = {**self.pair_evidence(UNLABELLED_RULE, index, labelled),
                    "other_label": ledger.labels[labelled],
                    "labelled": count, "answer_pattern": self.options.answer_pattern,
                    "prompt_similarity": round(similarity, 3),
                    **self.prompt_words(index, labelled, similarity)}
        return Finding(UNLABELLED_RULE, detail, evidence, False)

    def pair_evidence(self, rule: str, index: int, other: int) -> dict[str, str]:
        """What a finding about two records' answers holds first: the rule, the other record
        and both answers."""
        ledger = self.ledger
        return {"rule": rule, "other_id": ledger.ids[other],
                "other_answer": ledger.answer_snippets[other],
                "answer": ledger.answer_snippets[index]}

    def shown_prompt(self, index: int, other: int, similarity: float) -> str:
        """How the other record's prompt relates to this one's: the same, or similar, with
        the measured Jaccard and the words each has that the other lacks."""
        if similarity == 1.0:
            return "same prompt"
        mine, theirs = self.near.differing_words(index, other)
        return (f"similar prompt, Jaccard {similarity:.2f}; only here: {_words(mine)}, only"
                f" there: {_words(theirs)}")

    def prompt_words(self, index: int, other: int, similarity: float) -> dict[str, str]:
        if similarity == 1.0:
            return {}
        mine, theirs = self.near.differing_words(index, other)
        return {"prompt_words": snippet(" ".join(mine)),
                "other_prompt_words": snippet(" ".join(theirs))}

    def shown_answer(self, index: int) -> str:
        label, text = self.ledger.labels[index], snippet(self.ledger.answer_snippets[index])
        return f"{label!r} ({text!r})" if label is not None else repr(text)

    def similarity(self, first: int, second: int) -> float:
        if self.ledger.prompts[first] == self.ledger.prompts[second]:
            return 1.0
        return self.near.similarity(first, second)


def _words(words: list[str]) -> str:
    return repr(snippet(" ".join(words), 40)) if words else "(nothing)"
