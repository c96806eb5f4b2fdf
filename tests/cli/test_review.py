"""`curate review`: the terminal review driven through its input stream and through a real
pseudo-terminal, the non-interactive commands, and the whole loop from `curate run` to a
dataset that holds only approved records."""

import json
import os
import stat
import sys
import textwrap

import pytest
from click.testing import CliRunner

from curate.cli import build_cli
from curate.review.queue import Decision, ReviewQueue, queue_path
from curate.testing import invoke_cli

PEOPLE = "".join(json.dumps({"instruction": f"Human question {i}?",
                             "output": f"A human answer, number {i}."}) + "\n" for i in range(3))
MADE = "".join(json.dumps({"instruction": f"Generated question {i}?",
                           "output": f"A generated answer, number {i}."}) + "\n" for i in range(4))
RECIPE = """
[run]
dir = "runs/recipe"   # where run_recipe puts it, so `curate review RECIPE` finds it

[[sources]]
name = "people"
use = "jsonl"
path = "people.jsonl"

[[sources]]
name = "synthetic"
use = "jsonl"
path = "made.jsonl"
origin = "generated"

[[stages]]
use = "review"

[[stages]]
use = "length"
min_chars = 12

[split]
eval_fraction = 0
"""


@pytest.fixture
def waiting(run_recipe):
    """A run stopped with four generated records waiting for review; returns its recipe."""
    result = run_recipe(RECIPE, files={"people.jsonl": PEOPLE, "made.jsonl": MADE})
    assert result.exit_code == 3, result.output
    return result


def review(*args, input=None, env=None):
    result = CliRunner().invoke(build_cli(), ["review", *map(str, args)], input=input, env=env,
                                catch_exceptions=False)
    return result.exit_code, result.output


def queue_of(result) -> ReviewQueue:
    return ReviewQueue(queue_path(result.run_dir))


def editor(tmp_path, body: str) -> str:
    """An $EDITOR: a script that rewrites the file it is given with Python code `body`."""
    script = tmp_path / "editor.py"
    script.write_text(f"#!{sys.executable}\nimport sys\npath = sys.argv[1]\n"
                      f"text = open(path).read()\n{textwrap.dedent(body)}\n"
                      f"open(path, 'w').write(text)\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_the_terminal_review_decides_through_its_input_stream(waiting, tmp_path):
    fix = editor(tmp_path, "text = text.replace('A generated answer, number 2.',"
                           " 'An edited answer, checked.')")
    keys = "a\nr\nmade-up facts\nx\ne\ns\n"
    code, output = review(waiting.recipe, "--reviewer", "ann", input=keys, env={"EDITOR": fix})
    assert code == 0, output
    assert "[1/4] 4 pending" in output and "[2/4] 3 pending" in output
    assert "source synthetic, generated, from made.jsonl:1" in output
    assert "--- user ---\nGenerated question 0?\n--- assistant ---" in output
    assert "unknown key 'x': press a, r, e, s, u or q" in output
    assert "this session: approved 1, edited 1, rejected 1, skipped 1" in output
    assert "1 record still waits for review" in output
    statuses = [(c.status, c.decision.reviewer, c.decision.note)
                for c in queue_of(waiting).select(status=None)]
    assert statuses == [("approved", "ann", None), ("rejected", "ann", "made-up facts"),
                        ("edited", "ann", None), ("pending", None, None)]
    edited = queue_of(waiting).select(status="edited")[0].decision.edited
    assert edited[-1] == {"role": "assistant", "content": "An edited answer, checked."}


def test_undo_puts_the_last_decision_back(waiting):
    code, output = review(waiting.recipe, "--reviewer", "ann", input="a\nr\n\nu\nu\nq\n")
    assert code == 0, output
    assert output.count("undone:") == 2
    assert "this session: approved 0, edited 0, rejected 0, skipped 0" in output
    queue = queue_of(waiting)
    assert queue.counts()["pending"] == 4
    assert [row[2] for row in queue.history()] == ["approved", "rejected", "pending", "pending"]
    undone = queue.history()[2]
    assert undone[3] == "ann" and undone[4] and undone[5] == "undo: back to pending"


def test_the_last_decision_of_a_session_can_be_undone(waiting):
    code, output = review(waiting.recipe, "--reviewer", "ann", input="a\na\na\na\nu\nq\n")
    assert code == 0, output
    assert "nothing left to review\n[u]ndo  [q]uit > undone: " in output
    assert "[4/4] 1 pending" in output.split("undone: ")[1]  # shown again, then quit
    assert queue_of(waiting).counts()["pending"] == 1
    assert "this session: approved 3," in output


def test_an_invalid_edit_keeps_the_record_pending(waiting, tmp_path):
    broken = editor(tmp_path, "text = text.replace('=== assistant ===', '=== robot ===')")
    code, output = review(waiting.recipe, input="e\nq\n", env={"EDITOR": broken})
    assert "edit not applied: the conversation must end with an assistant turn" in output
    assert queue_of(waiting).counts()["pending"] == 4
    unchanged = editor(tmp_path, "pass")
    code, output = review(waiting.recipe, input="e\nq\n", env={"EDITOR": unchanged})
    assert "stays pending" in output
    assert queue_of(waiting).counts()["pending"] == 4


def test_the_terminal_review_works_in_a_real_terminal(waiting, tmp_path):
    pexpect = pytest.importorskip("pexpect")
    code = "from curate.cli import main; main()"
    child = pexpect.spawn(sys.executable, ["-c", code, "review", str(waiting.recipe),
                                           "--run-dir", str(waiting.run_dir), "--reviewer", "pty"],
                          cwd="/", env={**os.environ, "TERM": "dumb"}, encoding="utf-8",
                          timeout=30)
    child.expect(r"\[1/4\] 4 pending")
    child.expect(r"\[q\]uit > ")
    child.send("a")  # one key press, no Enter
    child.expect("approved: ")
    child.expect(r"\[2/4\] 3 pending")
    child.expect(r"\[q\]uit > ")
    child.send("r")
    child.expect(r"note \(Enter for none\): ")
    child.sendline("off topic")
    child.expect(r"\[3/4\] 2 pending")
    child.expect(r"\[q\]uit > ")
    child.send("q")
    child.expect("this session: approved 1, edited 0, rejected 1, skipped 0")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    decided = [(c.status, c.decision.reviewer, c.decision.note)
               for c in queue_of(waiting).select(status=None)][:2]
    assert decided == [("approved", "pty", None), ("rejected", "pty", "off topic")]


def test_list_show_approve_and_reject_without_a_terminal(waiting):
    queue = queue_of(waiting)
    first, second, third, fourth = queue.select()
    code, output = review("list", waiting.recipe)
    assert output.splitlines()[-1] == "4 candidates"
    assert code == 0 and first.id in output and "Generated question 0?" in output
    code, output = review("approve", waiting.recipe, first.id[:6], "--reviewer", "bob")
    assert code == 0 and "approved: 1, not applied: 0" in output
    code, output = review("reject", waiting.recipe, "--source", "synthetic", "--note", "weak",
                          "--reviewer", "ann")
    assert "rejected: 3, not applied: 0" in output
    assert "nothing waits for review: curate run" in output
    code, output = review("approve", waiting.recipe, second.id)
    assert f"not applied: {second.id}: already rejected by" in output
    assert code == 1  # a script deciding in bulk can tell
    code, output = review("approve", waiting.recipe, second.id, "--force", "--reviewer", "cy")
    assert code == 0 and "approved: 1" in output
    code, output = review("show", waiting.recipe, second.id)
    assert "decision: approved by cy" in output
    assert [line.split(" at ")[0] for line in output.splitlines()[-3:]] == [
        "history:", "  v1 rejected by ann", "  v2 approved by cy"]
    code, output = review("list", waiting.recipe, "--status", "rejected")
    assert output.splitlines()[-1] == "2 candidates"


def test_commands_name_what_they_act_on(waiting):
    for args, message in [
        (("approve", waiting.recipe), "say which candidates: record ids, --source"),
        (("approve", waiting.recipe, "abc"), "record id 'abc' is too short"),
        (("approve", waiting.recipe, "ffffffff"), "no candidate whose id starts with"),
        (("approve", waiting.recipe, "ffff", "--all"), "give record ids, or --source"),
        (("reject", waiting.recipe, "--source", "synthtic"), "--source synthtic: no candidate"
         " has that source: did you mean 'synthetic'? (sources in the queue: synthetic)"),
        (("list", waiting.recipe, "--strategy", "evol"), "--strategy evol: no candidate has"
         " that strategy (strategies in the queue: "),
    ]:
        code, output = invoke_cli(["review", *map(str, args)])
        assert code == 2
        assert output.startswith("error: ") and output.count("\n") == 1, output
        assert message in output


def test_export_then_import_decisions(waiting, tmp_path):
    exported = tmp_path / "queue.jsonl"
    code, output = review("export", waiting.recipe, "-o", exported)
    assert code == 0, output
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert [line["status"] for line in lines] == ["pending"] * 4
    assert lines[0]["version"] == 0 and lines[0]["origin"] == "generated"
    lines[0]["status"] = "approved"
    lines[1].update(status="rejected", note="wrong")
    lines[2].update(status="edited", edited=[lines[2]["messages"][0],
                                             {"role": "assistant", "content": "Fixed elsewhere."}])
    queue = queue_of(waiting)
    third = queue.find(lines[2]["id"])
    queue.decide(third.id, Decision("approved", "zoe", "t"), third.version)  # decided meanwhile
    exported.write_text("".join(json.dumps(line) + "\n" for line in lines))
    code, output = review("import", waiting.recipe, exported, "--reviewer", "team")
    assert code == 1, output  # the two applied stay applied
    assert "decided: 2, not applied: 1" in output
    assert f"{third.id}: changed meanwhile, now approved by zoe" in output
    statuses = [(c.status, c.decision.reviewer) for c in queue_of(waiting).select(status=None)]
    assert statuses == [("approved", "team"), ("rejected", "team"), ("approved", "zoe"),
                        ("pending", None)]
    code, output = review("import", waiting.recipe, exported)
    assert "decided: 0, 2 unchanged, not applied: 1" in output


def test_a_bad_decisions_file_changes_nothing(waiting, tmp_path):
    first = queue_of(waiting).select()[0]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": first.id, "status": "approved"}) + "\n"
                   + json.dumps({"id": first.id, "status": "maybe"}) + "\n")
    code, output = invoke_cli(["review", "import", str(waiting.recipe), str(bad)])
    assert code == 2 and output.count("\n") == 1
    assert f"{bad}:2: status 'maybe' is not one of approved, rejected, edited" in output
    bad.write_text(json.dumps({"id": first.id, "status": "approved"}) + "\n"
                   + json.dumps({"id": "0000aaaa", "status": "rejected"}) + "\n")
    code, output = invoke_cli(["review", "import", str(waiting.recipe), str(bad)])
    assert f"{bad}:2: no candidate '0000aaaa' in the queue; nothing was imported" in output
    assert queue_of(waiting).counts()["pending"] == 4


def test_a_locked_or_damaged_queue_is_one_line(waiting):
    import sqlite3

    holder = sqlite3.connect(queue_path(waiting.run_dir), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    code, output = invoke_cli(["review", "approve", str(waiting.recipe), "--all", "--wait", "0.2"])
    holder.execute("ROLLBACK")
    holder.close()
    assert code == 2 and output.count("\n") == 1, output
    assert "review.sqlite: the review database is locked by another process" in output
    assert queue_of(waiting).counts()["pending"] == 4
    queue_path(waiting.run_dir).write_bytes(b"\0garbage" * 100)
    code, output = invoke_cli(["review", "list", str(waiting.recipe)])
    assert code == 2 and output.count("\n") == 1, output
    assert "the review database is damaged" in output


def test_no_queue_yet_is_one_line(tmp_path):
    (tmp_path / "r.toml").write_text(RECIPE)
    (tmp_path / "people.jsonl").write_text(PEOPLE)
    (tmp_path / "made.jsonl").write_text(MADE)
    code, output = invoke_cli(["review", str(tmp_path / "r.toml")])
    assert code == 2 and "no review queue yet (review.sqlite is missing): run the recipe" in output


def test_from_run_to_review_to_a_dataset_of_approved_records_only(waiting, run_recipe):
    assert "4 records wait for review: curate review" in waiting.output
    code, output = invoke_cli(["why", str(waiting.run_dir), queue_of(waiting).select()[0].id])
    assert "waits for review at step 'review'" in output
    first, second, third, fourth = [c.id for c in queue_of(waiting).select()]
    review("approve", waiting.recipe, first, third, "--reviewer", "ann")
    review("reject", waiting.recipe, second, "--note", "not true")
    half = run_recipe(RECIPE)
    assert half.exit_code == 3 and "1 record waits for review" in half.output
    assert not (half.run_dir / "dataset" / "train.jsonl").exists()
    review("reject", waiting.recipe, fourth)
    done = run_recipe(RECIPE)
    assert done.exit_code == 0, done.output
    train = done.dataset("train")
    generated = {line["id"] for line in train if line["origin"] == "generated"}
    assert generated == {first, third}
    assert len(train) == 5
    assert {s["name"]: s["cached"] for s in done.manifest["steps"]} == {
        "read": True, "review": False, "length": False}


def test_review_help_shows_the_keys_and_examples():
    code, output = invoke_cli(["review", "--help"])
    assert code == 0
    assert "press a (approve), r (reject" in output and "Examples:" in output
    for command in ("list", "show", "approve", "reject", "export", "import"):
        assert command in output


def test_list_stale_marks_candidates_the_latest_run_no_longer_has(waiting, run_recipe):
    fewer = "".join(MADE.splitlines(keepends=True)[1:])
    assert run_recipe(RECIPE, files={"made.jsonl": fewer}).exit_code == 3
    code, output = review("list", waiting.recipe, "--stale")
    lines = output.splitlines()
    assert code == 0 and lines[-1] == "4 candidates"
    assert sum(line.endswith("[stale: not in the latest run]") for line in lines) == 1
