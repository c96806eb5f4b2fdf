"""Generated records keep their ids (from the request) across reruns, and an approval binds to
the text that was approved: a rerun whose generated record has another text under the same id
(a changed prompt the request does not hold, a fresh answer) waits for review again."""

import json
import shutil

from curate.cli.run import EXIT_REVIEW_PENDING
from curate.review.queue import ReviewQueue, queue_path
from curate.testing import assert_complete, invoke_cli

REWRITE = {"use": "template", "output": "response",
           "template": "Rewrite this answer for an upset customer, keeping every fact:\n\n"
                       "{response}"}


def plain_run(result, *args: str):
    """`curate run` again, without the approving reviewer of the conftest's run_recipe."""
    return invoke_cli(["run", str(result.recipe), "--run-dir", str(result.run_dir), *args])


def generated_lines(run_dir) -> list[dict]:
    lines = (run_dir / "dataset" / "train.jsonl").read_text().splitlines()
    return [row for row in map(json.loads, lines) if row["origin"] == "generated"]


def test_a_changed_prompt_the_request_does_not_hold_is_reviewed_again(generate_recipe, files,
                                                                       run_recipe, tmp_path):
    approved = run_recipe(generate_recipe(REWRITE), files=files)
    assert_complete(approved)
    before = {row["id"]: row for row in generated_lines(approved.run_dir)}
    edited = files["qa.jsonl"].replace("Question 0 about kettles?", "Can I return my kettle?")
    (tmp_path / "qa.jsonl").write_text(edited)
    code, output = plain_run(approved)
    assert code == EXIT_REVIEW_PENDING, output
    assert "1 record waits for review" in output
    assert not (approved.run_dir / "dataset" / "train.jsonl").exists()
    queue = ReviewQueue(queue_path(approved.run_dir))
    [waiting] = queue.select()
    assert waiting.id in before  # the same request, so the same id: `curate why` follows it
    assert waiting.record.prompt == "Can I return my kettle?"
    assert "the text changed since it was approved by tester" in waiting.reason


def test_fresh_answers_under_old_approvals_are_reviewed_again(server, generate_recipe, files,
                                                              run_recipe):
    approved = run_recipe(generate_recipe(REWRITE), files=files)
    assert_complete(approved)
    shutil.rmtree(approved.run_dir / "cache")  # "delete the cache to pay for fresh answers"
    server.answer = lambda body: json.dumps({"response": "An answer nobody has read."})
    code, output = plain_run(approved, "--force")
    assert code == EXIT_REVIEW_PENDING, output
    assert "6 records wait for review" in output
    assert all("nobody has read" in c.record.response
               for c in ReviewQueue(queue_path(approved.run_dir)).select())
