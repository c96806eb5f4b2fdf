"""The `review` stage: generated records wait in the queue, the run stops before the dataset,
and after review only approved and edited records go on, edited ones checked again."""

import json

import pytest

from curate.records import Added, Record, record_id
from curate.review.queue import Decision, ReviewQueue, queue_path
from curate.testing import assert_clear_error, assert_complete, invoke_cli
from support import generated_stage as generated


@pytest.fixture
def first_run(curate_plugin, run_recipe):
    curate_plugin(generated, name="generated_stage")
    return run_recipe(generated.RECIPE, files=generated.FILES)


def queue_of(result) -> ReviewQueue:
    return ReviewQueue(queue_path(result.run_dir))


def decide(queue: ReviewQueue, candidate, status: str, note=None, edited=None) -> None:
    decision = Decision(status, "ann", "2025-01-02T03:04:05Z", note, edited)
    assert queue.decide(candidate.id, decision, candidate.version)[0]


def assert_complete_dataset(result) -> list[dict]:
    assert_complete(result)
    return result.dataset("train") + result.dataset("eval")


def answer(candidate, text: str) -> list[dict]:
    return [candidate.record.messages[0], {"role": "assistant", "content": text}]


def test_generated_records_wait_and_the_run_stops_before_the_dataset(first_run):
    assert first_run.exit_code == 3, first_run.output
    assert "6 records wait for review: curate review" in first_run.output
    manifest = first_run.manifest
    assert manifest["status"] == "review"
    assert manifest["review"] == {"input": 12, "added": 0, "rejected": 0, "pending": 6, "kept": 6,
                                  "accounted": 12, "steps": {"review": 6}}
    review_step = manifest["steps"][2]
    assert (review_step["in"], review_step["kept"], review_step["pending"]) == (12, 6, 6)
    assert not (first_run.run_dir / "dataset" / "train.jsonl").exists()
    assert not (first_run.run_dir / "report.html").exists()
    pending = first_run.step_dir("review") / "pending.parquet"
    import pyarrow.parquet as pq
    rows = pq.read_table(pending).to_pylist()
    assert [row["origin"] for row in rows] == ["generated"] * 6
    assert rows[0]["detail"] == "waits in the review queue (origin generated)"
    assert {c.strategy for c in queue_of(first_run).select()} == {"self-instruct", "evol"}


def test_only_approved_and_edited_records_reach_the_dataset(first_run, run_recipe):
    queue = queue_of(first_run)
    candidates = queue.select()
    decide(queue, candidates[0], "approved")
    decide(queue, candidates[1], "approved")
    decide(queue, candidates[2], "rejected", note="made-up facts")
    decide(queue, candidates[3], "edited", edited=answer(candidates[3], "A better answer, checked."))
    decide(queue, candidates[4], "edited", edited=answer(candidates[4], "Too short"))
    decide(queue, candidates[5], "rejected")
    again = run_recipe(generated.RECIPE)
    manifest = assert_complete(again)
    assert {s["name"]: s["cached"] for s in manifest["steps"]} == {
        "read": True, "mark-generated": True, "review": False, "length": False}
    dataset = again.dataset("train") + again.dataset("eval")
    allowed = {candidates[0].id, candidates[1].id}
    generated_lines = [line for line in dataset if line["origin"] == "generated"]
    assert {line["id"] for line in generated_lines} - allowed == {
        line["id"] for line in generated_lines
        if line["messages"][-1]["content"] == "A better answer, checked."}
    assert len(generated_lines) == 3
    assert len(dataset) == 9
    reasons = {(r["reason"], r["detail"]) for r in again.rejected("review")}
    assert reasons == {("rejected-in-review", "rejected by ann at 2025-01-02T03:04:05Z:"
                                              " made-up facts"),
                       ("rejected-in-review", "rejected by ann at 2025-01-02T03:04:05Z")}
    rechecked = again.rejected("length")
    assert [r["reason"] for r in rechecked] == ["response-too-short"]
    assert json.loads(rechecked[0]["meta"])["revised_from"] == candidates[4].id


def test_no_new_decision_reuses_every_step_and_still_waits(first_run, run_recipe):
    again = run_recipe(generated.RECIPE)
    assert again.exit_code == 3
    assert all(step["cached"] for step in again.manifest["steps"])
    assert "nothing changed" in again.output


def test_an_undone_decision_brings_back_the_cached_step(first_run, run_recipe):
    queue = queue_of(first_run)
    seen = queue.select()[0]
    _, decided = queue.decide(seen.id, Decision("approved", "ann", "t"), seen.version)
    queue.decide(seen.id, seen.decision, decided.version)
    again = run_recipe(generated.RECIPE)
    assert all(step["cached"] for step in again.manifest["steps"])


def test_why_says_where_reviewed_records_are(first_run, run_recipe):
    queue = queue_of(first_run)
    waiting, approved, rejected, edited = queue.select()[:4]
    decide(queue, approved, "approved")
    decide(queue, rejected, "rejected", note="wrong")
    decide(queue, edited, "edited", edited=answer(edited, "An answer that was edited."))
    run_dir = run_recipe(generated.RECIPE).run_dir
    code, output = invoke_cli(["why", str(run_dir), waiting.id])
    assert "waits for review at step 'review': waits in the review queue (origin generated);" \
           " review it with: curate review" in output
    code, output = invoke_cli(["why", str(run_dir), approved.id])
    assert "approved in review by ann at 2025-01-02T03:04:05Z" in output
    assert "kept through step 'length', where the run stopped: records wait for review" in output
    code, output = invoke_cli(["why", str(run_dir), rejected.id])
    assert "detail: rejected by ann at 2025-01-02T03:04:05Z: wrong" in output
    code, output = invoke_cli(["why", str(run_dir), edited.id])
    assert f"step 'review' revised {edited.id} into" in output
    assert "edited in review by ann" in output


def test_approved_records_say_who_approved_them_in_a_finished_run(first_run, run_recipe):
    queue = queue_of(first_run)
    for candidate in queue.select():
        decide(queue, candidate, "approved")
    finished = run_recipe(generated.RECIPE)
    assert_complete(finished)
    line = next(line for line in finished.dataset("train") if line["origin"] == "generated")
    code, output = invoke_cli(["why", str(finished.run_dir), line["id"]])
    assert "kept in the train split" in output
    assert "approved in review by ann at 2025-01-02T03:04:05Z" in output


CONFLICT = (
    '{"instruction": "Is the sky blue?", "output": "Yes, on a clear day."}\n'
    '{"instruction": "Is the sky blue?", "output": "No, it is green."}\n'
    '{"instruction": "Name a fruit.", "output": "An apple is a fruit."}\n'
)


def test_flagged_records_are_queued_when_asked(run_recipe):
    result = run_recipe("""
        [[sources]]
        name = "people"
        use = "jsonl"
        path = "d.jsonl"
        [[stages]]
        use = "consistency"
        on_conflict = "flag"
        [[stages]]
        use = "review"
        origins = []
        flagged = true
    """, files={"d.jsonl": CONFLICT})
    assert result.exit_code == 3, result.output
    reasons = [c.reason for c in queue_of(result).select()]
    assert reasons == ["consistency conflicting-answer"] * 2


def test_a_human_record_never_takes_the_decision_of_a_generated_copy(curate_plugin, run_recipe):
    curate_plugin(generated, name="generated_stage")
    files = {"people.jsonl": generated.rows("Human", 6),
             "synthetic.jsonl": generated.rows("Human", 1) + generated.rows("Generated", 5)}
    first = run_recipe(generated.RECIPE, files=files)
    assert first.exit_code == 3 and first.manifest["review"]["pending"] == 6
    queue = queue_of(first)
    for candidate in queue.select():
        decide(queue, candidate, "rejected")
    again = assert_complete(run_recipe(generated.RECIPE))
    assert again["final"]["train"] + again["final"]["eval"] == 6
    rejected = run_recipe(generated.RECIPE).rejected("review")
    assert {row["origin"] for row in rejected} == {"generated"} and len(rejected) == 6


def test_review_needs_known_origins(run_recipe):
    result = run_recipe('[[sources]]\nname = "d"\nuse = "jsonl"\npath = "d.jsonl"\n'
                        '[[stages]]\nuse = "review"\norigins = ["robot"]\n',
                        files={"d.jsonl": CONFLICT}, args=["-q"])
    assert_clear_error(result, "stages[0].origins[0]", "unknown origin 'robot'")


def test_a_damaged_queue_stops_the_run_with_one_line(first_run, run_recipe):
    queue_path(first_run.run_dir).write_bytes(b"garbage" * 200)
    again = run_recipe(generated.RECIPE, args=["-q"])
    assert_clear_error(again, "review.sqlite: the review database is damaged")
    assert queue_path(first_run.run_dir).read_bytes() == b"garbage" * 200


def test_the_report_waits_for_the_review(first_run):
    code, output = invoke_cli(["report", str(first_run.run_dir)])
    assert code == 2 and output.count("\n") == 1
    assert "6 records wait for review; review them with `curate review RECIPE`" in output


CONFLICT_RECIPE = """
[[sources]]
name = "qa"
use = "jsonl"
path = "qa.jsonl"

[[stages]]
use = "consistency"
on_conflict = "review"

[[stages]]
use = "review"
"""


def test_a_consistency_conflict_goes_to_people_under_the_review_policy(run_recipe):
    from curate.testing import jsonl, messages_row

    rows = [messages_row("What is the capital of France?", "Paris is the capital."),
            messages_row("What is the capital of France?", "Lyon is the capital."),
            *(messages_row(f"Question number {i}?", f"Answer number {i}.") for i in range(8))]
    first = run_recipe(CONFLICT_RECIPE, files={"qa.jsonl": jsonl(*rows)})
    assert first.exit_code == 3, first.output
    assert first.manifest["review"]["pending"] == 2
    candidates = queue_of(first).select()
    assert all("consistency conflicting-answer" in c.reason for c in candidates)
    paris = next(c for c in candidates if "Paris" in c.record.response)
    lyon = next(c for c in candidates if "Lyon" in c.record.response)
    decide(queue_of(first), paris, "approved")
    decide(queue_of(first), lyon, "rejected", note="wrong city")
    again = run_recipe(CONFLICT_RECIPE)
    assert_complete(again)
    answers = again.answers("train") + again.answers("eval")
    assert "Paris is the capital." in answers and "Lyon is the capital." not in answers


def test_unapproved_generated_records_never_reach_the_dataset(curate_plugin, run_recipe):
    """A plugin that makes generated records without declaring it (no `adds_origin`) slips past
    the recipe check; the dataset writer still refuses them, and writes nothing."""
    curate_plugin(generated, name="generated_stage")
    unreviewed = generated.RECIPE.replace('[[stages]]\nuse = "review"\n', "")
    result = run_recipe(unreviewed, files=generated.FILES, args=["-q"])
    assert_clear_error(result, "was generated but no person approved it",
                       'add a review stage after the stage that generates it')
    assert not (result.run_dir / "dataset" / "train.jsonl").exists()
    assert not (result.run_dir / "dataset" / "eval.jsonl").exists()


class DeclaredGenerator(generated.MarkGenerated):
    name = "declared-generator"
    adds_origin = "generated"


def test_a_generating_stage_without_review_after_it_fails_validation(curate_plugin, run_recipe):
    import types

    from curate import hookimpl

    plugin = types.ModuleType("declared_generator")
    plugin.register_stages = hookimpl(lambda register: register(DeclaredGenerator))
    curate_plugin(plugin, name="declared_generator")
    text = generated.RECIPE.replace('use = "mark-generated"', 'use = "declared-generator"')
    before = text.replace('[[stages]]\nuse = "review"\n', "")
    result = run_recipe(before.replace("[split]", '[[stages]]\nuse = "review"\norigins = '
                                       '["rehearsal"]\n[split]'), files=generated.FILES,
                        args=["-q"])
    assert_clear_error(result, "recipe.toml: stages[0]: stage 'declared-generator' generates",
                       "review stage 'review' does not hold them: add \"generated\" to its"
                       " origins")
    result = run_recipe(before, args=["-q"])
    assert_clear_error(result, 'add a review stage after it ([[stages]] use = "review")')
    assert run_recipe(text).exit_code == 3  # with a review stage after it, records wait


class DecideMeanwhile(generated.MarkGenerated):
    """Marks records generated and, while the run is going (after it was planned), approves
    the first waiting candidate, as a reviewer working during a run would."""

    name = "decide-meanwhile"

    def process(self, records):
        queue = ReviewQueue(queue_path(self.context.run_dir))
        waiting = queue.select()
        if waiting:
            decide(queue, waiting[0], "approved")
        yield from super().process(records)


def test_a_decision_made_while_the_run_goes_waits_for_the_next_run(first_run, run_recipe,
                                                                   curate_plugin):
    import types

    from curate import hookimpl

    plugin = types.ModuleType("decide_meanwhile")
    plugin.register_stages = hookimpl(lambda register: register(DecideMeanwhile))
    curate_plugin(plugin, name="decide_meanwhile")
    recipe = generated.RECIPE.replace('use = "mark-generated"', 'use = "decide-meanwhile"')
    during = run_recipe(recipe)
    assert during.manifest["review"]["pending"] == 6  # the run decides with what it planned
    queue = queue_of(during)
    approved = queue.select(status="approved")[0]
    assert queue.decide(approved.id, Decision("pending"), approved.version)[0]  # undone
    again = run_recipe(recipe)
    assert all(step["cached"] for step in again.manifest["steps"])
    assert again.manifest["review"]["pending"] == 6 == queue.counts()["pending"]


class GenerateKeyedByPrompt(generated.MarkGenerated):
    """Adds a generated copy of each record of the synthetic source under an id from its
    prompt alone, as generated ids derive from the request, not from the text the model gave."""

    name = "keyed-by-prompt"
    adds_origin = "generated"

    def process(self, records):
        for record in records:
            yield record
            if record.source == self.options.source:
                key = record_id([m for m in record.messages if m["role"] == "user"])
                yield Added(Record(record.messages, "model", "generated",
                                   {"generation": {"strategy": "copy"}}, key))


def test_a_record_whose_text_changed_since_its_approval_waits_again(run_recipe, curate_plugin):
    import types

    from curate import hookimpl

    plugin = types.ModuleType("keyed_by_prompt")
    plugin.register_stages = hookimpl(lambda register: register(GenerateKeyedByPrompt))
    curate_plugin(plugin, name="keyed_by_prompt")
    recipe = generated.RECIPE.replace('use = "mark-generated"', 'use = "keyed-by-prompt"')
    first = run_recipe(recipe, files=generated.FILES)
    queue = queue_of(first)
    for candidate in queue.select():
        decide(queue, candidate, "approved")
    assert_complete(run_recipe(recipe))
    rewritten = generated.FILES["synthetic.jsonl"].replace("number 2.", "number 2, or not.")
    changed = run_recipe(recipe, files={"synthetic.jsonl": rewritten})
    assert changed.exit_code == 3, changed.output
    [waiting] = queue.select()
    assert waiting.record.response == "A generated answer, number 2, or not."
    assert "the text changed since it was approved by ann" in waiting.reason
    assert not (changed.run_dir / "dataset" / "train.jsonl").exists()
    decide(queue, waiting, "approved")
    answers = [line["messages"][-1]["content"] for line in
               assert_complete_dataset(run_recipe(recipe)) if line["origin"] == "generated"]
    assert "A generated answer, number 2, or not." in answers
    assert "A generated answer, number 2." not in answers
