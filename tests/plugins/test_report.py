"""The quality report, from real runs: the files `curate run` and `curate report` write, their
numbers against the manifest and the run folder, the sections fed by language, duplicate and
consistency stages, escaping of hostile text, determinism, and one-line errors.

The language, dedupe and consistency stages are stood in for by small stages below that write
exactly the shapes those plugins write: meta["language"], duplicate evidence, consistency
evidence and meta["consistency"]."""

import json
import re
import types
from pathlib import Path

import pyarrow as pa
import pytest

from curate import hookimpl
from curate.records import Added, Record, Rejection
from curate.stages import Filter, Stage
from curate.testing import invoke_cli, jsonl

XSS = "<script>alert(1)</script>"


class TagLanguage(Filter):
    """meta["language"] as the language stage writes it: French prompts are "fr", texts under
    12 characters are not judged."""

    name = "tag-language"

    def check(self, record):
        record.meta["language"] = {"prompt": _language(record.prompt),
                                   "response": _language(record.response)}


def _language(text):
    if len(text) < 12:
        return None
    french = text.startswith(("Bonjour", "La capitale"))
    return {"code": "fr" if french else "en", "probability": 0.99}


class MarkDuplicates(Stage):
    """Later records with the same response, ignoring case, are rejected with the evidence the
    dedupe stage writes: exact copies by "exact", the others by "minhash"."""

    name = "mark-duplicates"

    def process(self, records):
        records = list(records)
        clusters = {}
        for record in records:
            clusters.setdefault(record.response.lower(), []).append(record)
        for record in records:
            members = clusters[record.response.lower()]
            first = members[0]
            if record is first:
                yield record
                continue
            exact = record.response == first.response
            yield Rejection(record, "near-duplicate", f"duplicate of {first.id}", evidence={
                "duplicate_of": first.id, "similarity": 1.0 if exact else 0.875,
                "method": "exact" if exact else "minhash", "cluster_size": len(members)})


class CheckConsistency(Stage):
    """A prompt answered differently is rejected with the rule's evidence; a shouting response
    is kept and flagged in meta["consistency"]."""

    name = "check-consistency"

    def process(self, records):
        first_answers = {}
        for record in records:
            first = first_answers.setdefault(record.prompt, record)
            if first.response != record.response:
                yield Rejection(record, "conflicting-answer",
                                f"the same prompt is answered differently by {first.id}",
                                evidence={"rule": "same-prompt-different-answer",
                                          "other_id": first.id, "other_answer": first.response})
                continue
            if "!!!" in record.response:
                record.meta["consistency"] = [{"rule": "format", "other_id": None,
                                               "detail": "the response shouts (!!!)"}]
            yield record


@pytest.fixture
def stand_ins(curate_plugin):
    module = types.ModuleType("stand_ins")
    module.register_stages = hookimpl(lambda register: [
        register(stage) for stage in (TagLanguage, MarkDuplicates, CheckConsistency)])
    curate_plugin(module, name="stand-ins")


PAIRS = [
    ("Name a primary colour.", "Blue is a primary colour."),
    ("Bonjour, quelle est la capitale de la France ?", "La capitale de la France est Paris."),
    ("Hi?", "Hello to you as well."),
    ("Copy one", "The same answer, three times."),
    ("Copy two", "The same answer, three times."),
    (f"Copy {XSS} three", "THE SAME ANSWER, THREE TIMES."),
    ("Pair a", "A pair of answers."),
    ("Pair b", "A pair of answers."),
    ("What is 2+2?", "It is four."),
    ("What is 2+2?", "It is five, surely."),
    ("Say it loud", "I am shouting!!!"),
    ("مرحبا، كيف حالك اليوم؟", "أنا بخير، شكرا لك."),
    (XSS, "no"),
    ("a | b\nc `d` | e", "x"),
    ("\u202eevil\u202c and a \x07bell", "ok"),
    ("Emoji 👨\u200d👩\u200d👧 and zero\u200bwidth", "Shouting again!!!"),
    ("Empty", ""),
    ("Short one", "ab"),
    ("A long one", "x" * 1_000_000),
]
DATA = jsonl(*({"instruction": p, "output": r} for p, r in PAIRS)) + (
    "this line is not json <b>bold</b> | pipe\n")
RECIPE = """
[run]
seed = 1

[[sources]]
name = "mixed"
use = "jsonl"
path = "data.jsonl"
max_bad_fraction = 0.5

[[stages]]
use = "length"
min_chars = 5
max_chars = 5000

[[stages]]
use = "tag-language"

[[stages]]
use = "mark-duplicates"

[[stages]]
use = "check-consistency"

[split]
eval_fraction = 0.25
"""


@pytest.fixture
def run(stand_ins, run_recipe):
    result = run_recipe(RECIPE, files={"data.jsonl": DATA})
    assert result.exit_code == 0, result.output
    return result


def report_files(run_dir: Path) -> tuple[str, str]:
    return ((run_dir / "report.md").read_text(encoding="utf-8"),
            (run_dir / "report.html").read_text(encoding="utf-8"))


def table_rows(markdown: str, header_start: str) -> list[list[str]]:
    """The cells of the Markdown table whose header begins with `header_start`."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header_start}"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def test_a_run_writes_the_report_and_the_command_rewrites_the_same_bytes(run):
    markdown, html = report_files(run.run_dir)
    code, output = invoke_cli(["report", str(run.run_dir)])
    assert code == 0
    assert output == markdown + f"\nreport: {run.run_dir / 'report.html'}\n"
    assert report_files(run.run_dir) == (markdown, html)
    code, output = invoke_cli(["report", str(run.run_dir), "--quiet"])
    assert output.splitlines() == [str(run.run_dir / "report.html"),
                                   str(run.run_dir / "report.md")]


def test_the_funnel_matches_the_manifest(run):
    manifest, (markdown, html) = run.manifest, report_files(run.run_dir)
    rows = table_rows(markdown, "step")
    assert rows == [[f"{s['index']:02d}", s["name"], f"{s['in']:,}", f"{s['kept']:,}",
                     f"{s['rejected']:,}", f"{100 * s['kept'] / s['in']:.1f}%"]
                    for s in manifest["steps"]]
    final = manifest["final"]
    total = final["train"] + final["eval"]
    dataset = (f"Dataset: {total} records, {final['train']} train + {final['eval']} eval:"
               f" {100 * total / final['input']:.1f}% of the {final['input']} input rows.")
    assert dataset in markdown and dataset in html
    for step in manifest["steps"]:
        assert f"{step['kept']:,} kept" in html and f"{step['rejected']:,} rejected" in html
        kept_share = f"{100 * step['kept'] / step['in']:.1f}%"
        assert f'<td class="n">{step["rejected"]:,}</td><td class="n">{kept_share}</td>' in html
    assert f"{final['input']:,} input rows" in markdown
    share = 100 * final["rejected"] / final["input"]
    rejected_share = f"{final['rejected']} rejected ({share:.1f}%)"
    assert rejected_share in markdown and rejected_share in html


class AddRecords(Stage):
    """Passes its input on, then adds two records of its own and one it rejects at once."""

    name = "add-records"

    def process(self, records):
        yield from records
        for number in range(3):
            record = Record([{"role": "user", "content": f"Added question {number}?"},
                             {"role": "assistant", "content": f"An added answer, {number}."}],
                            "adder")
            yield Added(record if number < 2 else Rejection(record, "dropped", "made to go"))


def test_the_funnel_shows_records_a_step_added(curate_plugin, run_recipe):
    module = types.ModuleType("adder")
    module.register_stages = hookimpl(lambda register: register(AddRecords))
    curate_plugin(module, name="adder")
    text = RECIPE.split("[[stages]]\nuse = \"tag-language\"")[0] + (
        '[[stages]]\nuse = "add-records"\n\n[split]\neval_fraction = 0\n')
    data = jsonl(*({"instruction": f"Question {i}?", "output": f"Answer number {i}."}
                   for i in range(3)))
    result = run_recipe(text, files={"data.jsonl": data})
    assert result.exit_code == 0, result.output
    markdown, html = report_files(result.run_dir)
    rows = table_rows(markdown, "step")
    header = markdown.split("## Funnel\n\n")[1].splitlines()[0]
    assert header == "| step | name | in | added | kept | rejected | kept % |"
    assert rows[1] == ["01", "length", "3", "", "3", "0", "100.0%"]
    assert rows[2] == ["02", "add-records", "3", "+3", "5", "1", "83.3%"]
    assert len(rows) == 3
    assert ("Dataset: 5 records, 5 train + 0 eval: 83.3% of the 6 input rows and added records."
            in markdown)
    assert "3 input rows + 3 added → 5 train + 0 eval; 1 rejected (16.7%)" in markdown
    assert '<th class="n">added</th>' in html and '<td class="n">+3</td>' in html
    assert "3 input rows + 3 added →" in html


def test_each_reason_shows_its_first_three_rejections(run):
    markdown, html = report_files(run.run_dir)
    examples = table_rows(markdown, "step | reason | id")
    for step in run.manifest["steps"]:
        rejected = run.rejected(step["name"])
        for reason, count in step["reasons"].items():
            first = [row["id"] for row in rejected if row["reason"] == reason][:3]
            shown = [row[2].strip("`") for row in examples if row[:2] == [step["name"], reason]]
            assert shown == first and len(shown) == min(count, 3)
            assert all(f"<code>{record_id}</code>" in html for record_id in first)
            share = f"{100 * count / step['in']:.1f}%"
            assert f"| {step['name']} | {reason} | {count:,} | {share} |" in markdown
            assert (f'<td>{step["name"]}</td><td>{reason}</td><td class="n">{count:,}</td>'
                    f'<td class="n">{share}</td>') in html
    too_short = [row for row in examples if row[1] == "response-too-short"]
    assert len(too_short) == 3 < run.manifest["steps"][1]["reasons"]["response-too-short"]
    unreadable = next(row for row in examples if row[1] == "malformed-json")
    assert unreadable[4] == r"raw: this line is not json \<b\>bold\</b\> \| pipe"


def test_languages_come_from_kept_records_meta(run):
    markdown, _ = report_files(run.run_dir)
    kept = [json.loads(row["meta"])["language"] for row in run.kept("check-consistency")]
    prompts = [(lang["prompt"] or {}).get("code") for lang in kept]
    rows = {row[0]: row[1:] for row in table_rows(markdown, "language")}
    assert rows.keys() == {"en", "fr", "not judged"}
    for code, row in rows.items():
        count = prompts.count(None if code == "not judged" else code)
        assert row[0] == f"{count} ({100 * count / len(kept):.1f}%)"
    assert prompts.count("fr") == 1
    assert "Prompt and response languages differ in 0 kept records." in markdown


def test_duplicate_clusters_name_their_survivor(run):
    markdown, html = report_files(run.run_dir)
    rejected = run.rejected("mark-duplicates")
    assert len(rejected) == 3
    assert "3 duplicates removed in 2 clusters (by method: exact 2, minhash 1)" in markdown
    assert "Clusters by size (survivor included): 2: 1, 3: 1." in markdown
    survivor = json.loads(rejected[0]["evidence"])["duplicate_of"]
    largest = table_rows(markdown, "size")
    assert largest[0][:4] == ["3", "mark-duplicates", f"`{survivor}`", "0.88–1.00"]
    assert largest[0][4] == "Copy one"
    assert largest[1][0] == "2" and largest[1][4] == "Pair a"
    assert f"<code>{survivor}</code>" in html


def test_consistency_findings_show_rule_other_record_and_flags(run):
    markdown, html = report_files(run.run_dir)
    assert table_rows(markdown, "rule | rejected") == [["format", "0", "2"],
                                                       ["same-prompt-different-answer", "1", "0"]]
    findings = {row[0]: row for row in table_rows(markdown, "rule | outcome")[::-1]}
    other = json.loads(run.rejected("check-consistency")[0]["evidence"])["other_id"]
    conflict = findings["same-prompt-different-answer"]
    assert conflict[1:2] == ["rejected"] and conflict[4:6] == [f"`{other}`", "It is four."]
    assert findings["format"][1] == "flagged"
    assert findings["format"][3] == "the response shouts (!!!)"
    assert "It is five, surely." in html and "the response shouts (!!!)" in html


def test_hostile_text_is_escaped_in_html(run):
    _, html = report_files(run.run_dir)
    assert "<script" not in html.lower() and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>bold" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "\u202e" not in html and "⟨U+202E⟩evil⟨U+202C⟩" in html and "⟨U+0007⟩bell" in html
    assert "zero⟨U+200B⟩width" in html and "👨\u200d👩\u200d👧" in html
    assert "script-src" not in html and "default-src 'none'" in html
    assert not re.search(r"(src|href)=\"(?!#)|https?:|url\(", html), "nothing external"
    assert len(html) < 200_000, "a 1 MB response is shortened, not copied"


def test_markdown_tables_survive_pipes_backticks_and_newlines(run):
    markdown, _ = report_files(run.run_dir)
    for line in markdown.splitlines():
        if line.startswith("|"):
            assert line.endswith("|"), line
    for block in re.findall(r"((?:^\|.*\n)+)", markdown, flags=re.MULTILINE):
        cells = {len(re.split(r"(?<!\\)\|", line)) for line in block.splitlines()}
        assert len(cells) == 1, f"rows with different numbers of cells:\n{block}"
    assert r"prompt: a \| b ↵ c \`d\` \| e → response: x" in markdown
    assert "\u202e" not in markdown and "\x07" not in markdown
    assert r"\<script\>alert(1)\</script\>" in markdown


def test_the_same_run_gives_byte_identical_reports(run, run_recipe):
    first = report_files(run.run_dir)
    again = run_recipe(RECIPE, args=["--force"])
    assert again.exit_code == 0, again.output
    assert report_files(again.run_dir) == first


def test_lengths_are_measured_as_records_join_their_turns(run):
    markdown, _ = report_files(run.run_dir)
    rows = {row[0]: row[1:] for row in table_rows(markdown, "text")}
    kept = [r for split in ("train", "eval") for r in run.dataset(split)]
    responses = sorted(len("\n\n".join(m["content"] for m in r["messages"]
                                       if m["role"] == "assistant")) for r in kept)
    assert rows["response, kept"][0] == str(len(kept))
    assert rows["response, kept"][1] == str(responses[0])
    assert rows["response, kept"][4] == f"{responses[-1]:,}"
    assert rows["response, rejected"][4] == "1,000,000"


def test_sections_without_data_are_left_out(run_recipe):
    result = run_recipe(RECIPE.split("[[stages]]\nuse = \"tag-language\"")[0],
                        files={"data.jsonl": DATA})
    markdown, html = report_files(result.run_dir)
    assert "## Funnel" in markdown and "## Rejection reasons" in markdown
    for absent in ("Languages", "Duplicates", "Consistency"):
        assert f"## {absent}" not in markdown and f"<h2>{absent}" not in html


def test_large_runs_sample_lengths_but_count_exactly(run_recipe, monkeypatch):
    from curate.plugins import report_scan

    monkeypatch.setattr(report_scan, "SAMPLE_ROWS", 3000)
    rows = jsonl(*({"instruction": f"Question {i}", "output": "short" if i % 10 else "no"}
                   for i in range(10_000)))
    result = run_recipe(RECIPE.split("[[stages]]\nuse = \"tag-language\"")[0],
                        files={"data.jsonl": rows})
    markdown, _ = report_files(result.run_dir)
    assert "| length | response-too-short | 1,000 | 10.0% |" in markdown
    assert re.search(r"Measured on a sample of [\d,]+ of 10,000 records", markdown)


def test_json_of_an_unexpected_shape_is_read_as_missing():
    from curate.plugins.report_scan import EVIDENCE_SCHEMA, parse_json_rows

    texts = pa.array(['{"duplicate_of":"a","similarity":0.9,"cluster_size":2}',
                      '{"duplicate_of":"b","similarity":"high","cluster_size":2.5}'])
    rows = parse_json_rows([texts], EVIDENCE_SCHEMA).to_pylist()
    assert [(r["duplicate_of"], r["similarity"], r["cluster_size"]) for r in rows] == [
        ("a", 0.9, 2), ("b", None, None)]


def test_unusable_folders_are_one_line_errors(run, tmp_path, run_recipe):
    cases = {tmp_path / "nowhere": "not a curate run folder",
             run.recipe: "is a file, not a run folder"}
    for folder, message in cases.items():
        code, output = invoke_cli(["report", str(folder)])
        assert code == 2 and output.startswith("error: ") and message in output
        assert len(output.splitlines()) == 1
    partial = run_recipe(RECIPE, args=["--until", "length"], name="partial")
    code, output = invoke_cli(["report", str(partial.run_dir)])
    assert code == 2 and "stopped after step 'length' (--until)" in output
    (run.step_dir("length") / "rejected.parquet").unlink()
    code, output = invoke_cli(["report", str(run.run_dir)])
    assert code == 2 and "the run folder is damaged" in output and len(output.splitlines()) == 1


def test_the_quickstart_run_has_a_report(repo, tmp_path):
    run_dir = tmp_path / "quickstart"
    code, output = invoke_cli(["run", str(repo / "recipes" / "quickstart.toml"),
                               "--run-dir", str(run_dir)])
    assert code == 0, output
    markdown, html = report_files(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    for step in manifest["steps"]:
        for reason in step["reasons"]:
            assert f"| {step['name']} | {reason} |" in markdown and reason in html
    assert html.count("<svg") >= 4
