"""The quality report's Rehearsal mix section, its duplicate count when the rehearsal stage finds
copies of task records, the cap on listed rejection reasons, and direction marks spelled out:
from real runs."""

import json
import types

from curate import hookimpl
from curate.plugins.report_data import SHOWN_REASONS
from curate.plugins.report_html import h
from curate.plugins.report_markdown import md
from curate.records import Rejection
from curate.stages import Stage
from curate.testing import jsonl

TASK = [{"prompt": f"Task question {i}: how do the {i} parcels reach the depot?",
         "completion": f"Task answer {i}: by the morning van."} for i in range(40)]
POOL = [
    {"instruction": TASK[0]["prompt"], "output": TASK[0]["completion"]},
    {"instruction": "Name three rivers in Europe.", "output": "The Rhine, the Danube, the Loire."},
    {"instruction": "Name three rivers in Europe.", "output": "The Rhine, the Danube, the Loire."},
    *({"instruction": f"General question {i} about {word}?",
       "output": f"A general reply on {word}."}
      for i, word in enumerate(("tides", "maple syrup", "violins", "glaciers", "kites", "clocks",
                                "bread")))]
RECIPE = """
[run]
seed = 3

[[sources]]
name = "task"
use = "jsonl"
path = "task.jsonl"
format = "prompt-completion"

[[stages]]
use = "rehearsal"
ratio = 0.3
held_out = 2

[stages.source]
use = "jsonl"
path = "pool.jsonl"
format = "alpaca"
max_bad_fraction = 0.5

[split]
eval_fraction = 0.1
"""


def report_files(run_dir):
    return ((run_dir / "report.md").read_text(encoding="utf-8"),
            (run_dir / "report.html").read_text(encoding="utf-8"))


def test_the_report_shows_the_rehearsal_mix_and_its_warning(run_recipe):
    result = run_recipe(RECIPE, files={"task.jsonl": jsonl(*TASK),
                                       "pool.jsonl": jsonl(*POOL) + "not json at all\n"})
    assert result.exit_code == 0, result.output
    markdown, html = report_files(result.run_dir)
    manifest = json.loads((result.run_dir / "manifest.json").read_text(encoding="utf-8"))
    mix, plan = manifest["split"]["rehearsal"], manifest["steps"][1]["stats"]["rehearsal"]
    assert "## Rehearsal mix" in markdown and "<h2>Rehearsal mix</h2>" in html
    assert f"**Warning:** {md(mix['warning'])}" in markdown
    assert f"<b>Warning:</b> {h(mix['warning'])}" in html
    share = mix["examples"]
    achieved = (f"| general share of training examples | 30.00% | {share['ratio']:.2%}"
                f" ({share['general']} of {share['train']}) | {mix['gap_pp']:+.2f} percentage"
                f" points |")
    assert achieved in markdown
    pool = plan["pool"]
    for label, value in [("rows read from the pool", pool["rows"]),
                         ("rows left out, unreadable or unusable", pool["unreadable"]),
                         ("drawn for training", pool["drawn"]),
                         ("held out for the forgetting check", pool["held_out"]),
                         ("rejected as duplicates", pool["duplicates"]),
                         ("rejected as too close to a task record", pool["contaminated"]),
                         ("general data wanted for training", f"{plan['wanted']} examples"),
                         ("pool ran out", "yes")]:
        assert f"| {label} | {value} |" in markdown
        assert f"<td>{label}</td><td class=\"n\">{value}</td>" in html
    asked = f"{pool['held_out_wanted']} asked, " if "held_out_wanted" in pool else ""
    held_out = (f"Held-out general records, for the forgetting check: {asked}{pool['held_out']}"
                f" set aside by the rehearsal step, {manifest['split']['general_eval']} in"
                f" dataset/general\\_eval.jsonl.")
    assert held_out in markdown
    left_out = plan["pool"]["unreadable_rows"][0]
    assert left_out.startswith("pool.jsonl:11: ")
    assert f"- rehearsal: {md(left_out)}" in markdown
    assert f"<li>rehearsal: {h(left_out)}</li>" in html


def test_copies_of_task_records_count_among_the_duplicates(run_recipe):
    result = run_recipe(RECIPE, files={"task.jsonl": jsonl(*TASK), "pool.jsonl": jsonl(*POOL)})
    assert result.exit_code == 0, result.output
    markdown, html = report_files(result.run_dir)
    manifest = json.loads((result.run_dir / "manifest.json").read_text(encoding="utf-8"))
    rejected = manifest["steps"][1]["reasons"]["rehearsal-duplicate"]
    assert rejected == 2, "one copy of a task record, one of a general record"
    assert f"{rejected} duplicates removed in 2 clusters" in markdown
    assert f"{rejected} duplicates removed in 2 clusters" in html
    task_id = next(row["id"] for row in _kept(result.run_dir)
                   if row["messages"][0]["content"] == TASK[0]["prompt"])
    assert f"`{task_id}`" in markdown


def _kept(run_dir):
    import pyarrow.parquet as pq

    folder = next((run_dir / "stages").glob("01-*"))
    return pq.read_table(folder / "kept.parquet", columns=["id", "messages"]).to_pylist()


class ReasonPerRecord(Stage):
    """Rejects every record but the first five, each for a reason of its own; the first of those
    reasons twice as often, so it ranks first."""

    name = "reason-per-record"

    def process(self, records):
        for number, record in enumerate(records):
            if number < 5:
                yield record
            else:
                yield Rejection(record, f"reason-{max(number, 6):04d}", "made to go")


def test_a_report_lists_the_most_frequent_reasons_and_sums_the_rest(curate_plugin, run_recipe):
    module = types.ModuleType("reasons")
    module.register_stages = hookimpl(lambda register: register(ReasonPerRecord))
    curate_plugin(module, name="reasons")
    rows = 5 + SHOWN_REASONS + 30
    text = ('[[sources]]\nname = "task"\nuse = "jsonl"\npath = "task.jsonl"\n'
            'format = "prompt-completion"\n\n[[stages]]\nuse = "reason-per-record"\n\n'
            '[split]\neval_fraction = 0\n')
    data = jsonl(*({"prompt": f"Question {i}?", "completion": f"Answer {i}."}
                   for i in range(rows)))
    result = run_recipe(text, files={"task.jsonl": data})
    assert result.exit_code == 0, result.output
    markdown, html = report_files(result.run_dir)
    listed = [line for line in markdown.splitlines()
              if line.startswith("| reason-per-record | reason-") and "made to go" not in line]
    assert len(listed) == SHOWN_REASONS
    assert listed[0].startswith("| reason-per-record | reason-0006 | 2 |")
    distinct = rows - 5 - 1
    hidden = distinct - SHOWN_REASONS
    note = f"And {hidden} more reasons ({hidden} records)"
    assert note in markdown and note in html
    assert html.count("reason-per-record · reason-") == SHOWN_REASONS
    assert f"{rows - 5} rejected" in markdown


def test_consistency_rules_beyond_the_cap_are_summed():
    from curate.plugins.report_data import RuleFindings, capped_rules

    rules = [RuleFindings(f"rule-{i:03d}", rejected=i, flagged=1)
             for i in range(SHOWN_REASONS + 10)]
    shown, more = capped_rules(rules)
    assert [f.rule for f in shown] == [f"rule-{i:03d}" for i in range(10, SHOWN_REASONS + 10)]
    assert (more.entries, more.records) == (10, sum(i + 1 for i in range(10)))


def test_rehearsal_mix_is_measured_again_for_a_manifest_without_it(run_recipe):
    from curate.plugins.report_rehearsal import gather_rehearsal, markdown_section

    plan = {"target_ratio": 0.3, "count": "examples", "wanted": 77, "pool_exhausted": True,
            "pool": {"rows": 40, "drawn": 30, "held_out": 10, "held_out_wanted": 12}}
    rehearsal = gather_rehearsal([("read", {}), ("mix", {"rehearsal": plan})],
                                 {"train_origins": {"human": 180, "rehearsal": 30},
                                  "general_eval": 10})
    text = markdown_section(rehearsal)
    assert "**Warning:** rehearsal: general data is 14.29% of the training examples" in text
    assert "| general share of training examples | 30.00% | 14.29% (30 of 210) |" in text
    assert "12 asked, 10 set aside by the rehearsal step, 10 in" in text
    assert "2 fewer than asked." in text


def test_direction_marks_are_spelled_out():
    text = "left\u200eright\u200fletter\u061cmark"
    spelled = "left⟨U+200E⟩right⟨U+200F⟩letter⟨U+061C⟩mark"
    assert md(text) == spelled and h(text) == spelled
