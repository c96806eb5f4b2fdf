"""The review queue on a real SQLite file: idempotent queueing, compare-and-set decisions, two
reviewer processes at once, undo, the decisions digest, and locked or damaged databases."""

import multiprocessing
import sqlite3

import pytest

from curate.errors import CurateError
from curate.records import Record
from curate.review.queue import Decision, ReviewQueue, queue_path


def record(number: int, source: str = "synthetic", strategy: str = "self-instruct") -> Record:
    messages = [{"role": "user", "content": f"Question {number}?"},
                {"role": "assistant", "content": f"Answer {number}."}]
    return Record(messages, source, "generated", {"generation": {"strategy": strategy}})


def filled(tmp_path, count: int = 10) -> ReviewQueue:
    queue = ReviewQueue(queue_path(tmp_path))
    queue.enqueue("review", [(record(n), "origin generated") for n in range(count)])
    return queue


def approve(queue: ReviewQueue, candidate_id: str, reviewer: str = "ann") -> bool:
    seen = queue.find(candidate_id)
    applied, _ = queue.decide(seen.id, Decision("approved", reviewer, "t1"), seen.version)
    return applied


def test_queueing_again_keeps_decisions_and_order(tmp_path):
    queue = filled(tmp_path)
    first = queue.select()
    assert [c.record.prompt for c in first] == [f"Question {n}?" for n in range(10)]
    assert approve(queue, first[3].id)
    again = queue.enqueue("review", [(record(n), "origin generated") for n in range(12)])
    assert again[first[3].id].status == "approved"
    assert len(queue.select(status=None)) == 12
    assert [c.record.prompt for c in queue.select(status=None)] == [
        f"Question {n}?" for n in range(12)]
    assert queue.counts() == {"pending": 11, "approved": 1, "rejected": 0, "edited": 0}


def test_a_decision_on_a_stale_version_is_not_applied(tmp_path):
    queue = filled(tmp_path)
    seen = queue.select()[0]
    assert queue.decide(seen.id, Decision("rejected", "ann", "t1", "off topic"), seen.version)[0]
    applied, now = queue.decide(seen.id, Decision("approved", "bob", "t2"), seen.version)
    assert not applied
    assert (now.status, now.decision.reviewer, now.decision.note) == ("rejected", "ann",
                                                                      "off topic")
    assert [row[2:4] for row in queue.history(seen.id)] == [("rejected", "ann")]


def test_undo_restores_the_previous_state_and_the_digest(tmp_path):
    queue = filled(tmp_path)
    untouched = queue.decisions_digest()
    seen = queue.select()[0]
    _, decided = queue.decide(seen.id, Decision("approved", "ann", "t1"), seen.version)
    assert queue.decisions_digest() != untouched
    applied, restored = queue.decide(seen.id, seen.decision, decided.version)
    assert applied and restored.status == "pending" and restored.version == seen.version + 2
    assert queue.decisions_digest() == untouched


def test_queueing_new_candidates_leaves_the_digest_alone(tmp_path):
    queue = filled(tmp_path)
    before = queue.decisions_digest()
    queue.enqueue("review", [(record(99), "origin generated")])
    assert queue.decisions_digest() == before


def test_candidates_missing_from_the_latest_run_are_stale(tmp_path):
    queue = filled(tmp_path)
    queue.deactivate("review")
    queue.enqueue("review", [(record(n), "origin generated") for n in range(3)])
    assert len(queue.select()) == 3
    assert len(queue.select(everything=True)) == 10
    assert queue.counts()["pending"] == 3


def test_select_by_source_and_strategy(tmp_path):
    queue = ReviewQueue(queue_path(tmp_path))
    queue.enqueue("review", [(record(1, "a", "evol"), "r"), (record(2, "a", "self-instruct"), "r"),
                             (record(3, "b", "evol"), "r")])
    assert [c.record.prompt for c in queue.select(source="a")] == ["Question 1?", "Question 2?"]
    assert [c.record.prompt for c in queue.select(strategy="evol")] == ["Question 1?",
                                                                       "Question 3?"]
    assert queue.find(queue.select(source="b")[0].id[:6]).record.source == "b"


def _decide_everything(path, reviewer, ids, results):
    """One reviewer process: tries to decide every candidate, each at the version it read."""
    applied = []
    with ReviewQueue(path, wait=30) as queue:
        for candidate_id in ids:
            seen = queue.find(candidate_id)
            if seen.status != "pending":
                continue
            status = "approved" if reviewer == "ann" else "rejected"
            if queue.decide(seen.id, Decision(status, reviewer, "t"), seen.version)[0]:
                applied.append(candidate_id)
    results[reviewer] = applied


def race(tmp_path, ids_for: dict[str, list[str]]) -> dict[str, list[str]]:
    context = multiprocessing.get_context("fork")
    with context.Manager() as manager:
        results = manager.dict()
        workers = [context.Process(target=_decide_everything,
                                   args=(queue_path(tmp_path), reviewer, ids, results))
                   for reviewer, ids in ids_for.items()]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
            assert worker.exitcode == 0
        return dict(results)


def test_two_reviewer_processes_never_lose_or_double_apply_a_decision(tmp_path):
    ids = [c.id for c in filled(tmp_path, 300).select()]
    results = race(tmp_path, {"ann": ids, "bob": ids})
    assert not set(results["ann"]) & set(results["bob"])
    assert sorted(results["ann"] + results["bob"]) == sorted(ids)
    queue = ReviewQueue(queue_path(tmp_path))
    history = queue.history()
    assert len(history) == 300
    by_reviewer = {row[0]: row[3] for row in history}
    assert all(by_reviewer[i] == "ann" for i in results["ann"])
    assert all(by_reviewer[i] == "bob" for i in results["bob"])
    assert queue.counts()["pending"] == 0
    assert all(c.version == 1 for c in queue.select(status=None))


def test_two_reviewers_on_different_candidates_both_get_every_decision_in(tmp_path):
    ids = [c.id for c in filled(tmp_path, 200).select()]
    results = race(tmp_path, {"ann": ids[::2], "bob": ids[1::2]})
    assert len(results["ann"]) == len(results["bob"]) == 100
    assert ReviewQueue(queue_path(tmp_path)).counts() == {
        "pending": 0, "approved": 100, "rejected": 100, "edited": 0}


def test_a_locked_database_is_one_clear_line_and_loses_nothing(tmp_path):
    queue = filled(tmp_path)
    seen = queue.select()[0]
    holder = sqlite3.connect(queue_path(tmp_path), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    waiting = ReviewQueue(queue_path(tmp_path), wait=0.2)
    with pytest.raises(CurateError, match="locked by another process .waited 0.2s.: nothing was"
                                          " changed"):
        waiting.decide(seen.id, Decision("approved", "ann", "t"), seen.version)
    holder.execute("ROLLBACK")
    assert waiting.decide(seen.id, Decision("approved", "ann", "t"), seen.version)[0]


def test_a_damaged_database_is_one_clear_line_and_is_left_as_it_was(tmp_path):
    damaged = queue_path(tmp_path)
    damaged.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CurateError, match="the review database is damaged") as error:
        ReviewQueue(damaged)
    assert "\n" not in str(error.value)
    assert damaged.read_bytes() == b"this is not a database" * 100


def test_a_newer_schema_is_refused(tmp_path):
    filled(tmp_path).db.execute("PRAGMA user_version = 99")
    with pytest.raises(CurateError, match="written by a newer curate"):
        ReviewQueue(queue_path(tmp_path))


def test_reviewer_commands_do_not_create_a_queue(tmp_path):
    with pytest.raises(CurateError, match="no review queue yet"):
        ReviewQueue(queue_path(tmp_path), create=False)
    assert not queue_path(tmp_path).exists()
