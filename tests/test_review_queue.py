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


def reworded(number: int, answer: str) -> Record:
    """record(number) under the same id with another answer, as a regenerated record is."""
    old = record(number)
    messages = [old.messages[0], {"role": "assistant", "content": answer}]
    return Record(messages, old.source, old.origin, old.meta, old.id)


def test_a_decision_holds_only_for_the_text_it_was_made_on(tmp_path):
    queue = filled(tmp_path, 2)
    first = queue.select()[0]
    assert approve(queue, first.id)
    approved = queue.decisions_digest()
    again = queue.enqueue("review", [(reworded(0, "Another answer."), "origin generated")])
    assert again[first.id].status == "pending"
    assert again[first.id].reason == ("origin generated; the text changed since it was approved"
                                      " by ann at t1")
    now_stored = queue.find(first.id)
    assert now_stored.record.response == "Another answer." and now_stored.status == "pending"
    assert now_stored.version == first.version + 2
    assert [(row[2], row[3], row[5]) for row in queue.history(first.id)] == [
        ("approved", "ann", None),
        ("pending", "curate run", "the text changed since it was approved by ann at t1: pending"
                                  " again")]
    assert queue.decisions_digest() != approved
    rerun = queue.enqueue("review", [(reworded(0, "Another answer."), "origin generated")])
    assert rerun[first.id].reason.endswith("the text changed since it was approved by ann at t1")
    assert approve(queue, first.id, "bob")
    assert queue.find(first.id).reason == "origin generated"
    kept = queue.enqueue("review", [(reworded(0, "Another answer."), "origin generated")])
    assert (kept[first.id].status, kept[first.id].decision.reviewer) == ("approved", "bob")


def test_a_reviewer_who_saw_the_old_text_cannot_decide_the_new_one(tmp_path):
    queue = filled(tmp_path, 1)
    seen = queue.select()[0]
    queue.enqueue("review", [(reworded(0, "A text nobody saw."), "origin generated")])
    applied, now = queue.decide(seen.id, Decision("approved", "ann", "t"), seen.version)
    assert not applied and now.status == "pending"
    assert "changed since" not in now.reason  # nothing had been decided on the old text


def test_the_snapshot_gives_a_decision_only_for_the_decided_text(tmp_path):
    queue = filled(tmp_path, 1)
    assert approve(queue, queue.select()[0].id)
    snapshot = queue.snapshot()
    assert snapshot.digest == queue.decisions_digest()
    assert snapshot.decision(record(0)).status == "approved"
    assert snapshot.decision(reworded(0, "Answer 0. ")) is None  # not even a space differs
    assert snapshot.decision(record(1)) is None


SCHEMA_1 = (
    """CREATE TABLE candidates (id TEXT PRIMARY KEY, step TEXT NOT NULL, active INTEGER NOT NULL,
        position INTEGER NOT NULL, record TEXT NOT NULL, source TEXT NOT NULL, strategy TEXT,
        reason TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending', version INTEGER NOT NULL
        DEFAULT 0, reviewer TEXT, decided_at TEXT, note TEXT, edited TEXT)""",
    """CREATE TABLE history (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL,
        version INTEGER NOT NULL, status TEXT NOT NULL, reviewer TEXT, decided_at TEXT,
        note TEXT, edited TEXT)""",
)


def test_a_queue_of_the_first_schema_keeps_its_decisions_for_their_texts(tmp_path):
    import json

    old = sqlite3.connect(queue_path(tmp_path))
    for statement in SCHEMA_1:
        old.execute(statement)
    for number in range(2):
        stored = json.dumps(record(number).to_json())
        old.execute("INSERT INTO candidates VALUES (?, 'review', 1, ?, ?, 'synthetic', NULL,"
                    " 'origin generated', 'approved', 1, 'ann', 't1', NULL, NULL)",
                    (record(number).id, number, stored))
    old.execute("PRAGMA user_version = 1")
    old.commit()
    old.close()
    queue = ReviewQueue(queue_path(tmp_path))
    states = queue.enqueue("review", [(record(0), "origin generated"),
                                      (reworded(1, "Not what ann read."), "origin generated")])
    assert states[record(0).id].status == "approved"
    assert states[record(1).id].status == "pending"


def test_an_imported_decision_applies_only_to_the_text_it_was_made_on(tmp_path):
    import json

    from curate.review.decisions import export_lines, import_decisions, read_decisions

    queue = filled(tmp_path, 2)
    lines = [json.loads(line) for line in export_lines(queue.select())]
    for line in lines:
        line.update(status="approved")
        del line["version"]  # a line without one decides a pending candidate
    decisions = tmp_path / "decisions.jsonl"
    decisions.write_text("".join(json.dumps(line) + "\n" for line in lines))
    queue.enqueue("review", [(reworded(0, "Answer nobody exported."), "origin generated")])
    result = import_decisions(queue, read_decisions(decisions, "ann"), decisions)
    assert result.applied == 1
    assert result.refused == [f"{decisions}:1: {lines[0]['id']}'s text is not the one in the file"
                              f" (it changed since the export): export it again"]
    assert queue.find(lines[0]["id"]).status == "pending"
