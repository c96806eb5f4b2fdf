"""`curate why`: where each record went."""

from curate.testing import invoke_cli

DATA = (
    '{"instruction": "Name a colour.", "output": "Blue is a colour."}\n'
    '{"instruction": "Too short", "output": " "}\n'
    'this line is not json\n'
)
RECIPE = """
[[sources]]
name = "colours"
use = "jsonl"
path = "d.jsonl"
max_bad_fraction = 0.5

[[stages]]
use = "length"

[split]
eval_fraction = 0
"""


def test_why_explains_rejected_and_kept_records(run_recipe):
    result = run_recipe(RECIPE, files={"d.jsonl": DATA})
    assert result.exit_code == 0, result.output
    short = result.rejected("length")[0]["id"]
    code, output = invoke_cli(["why", str(result.run_dir), short[:8]])
    assert code == 0
    assert output.splitlines() == [
        f"{short}  (source colours, human, from d.jsonl:2)",
        "  rejected at step 'length': response-too-short",
        "  detail: response has 0 characters, minimum is 1",
        "  passed: read",
    ]
    unreadable = result.rejected("read")[0]["id"]
    code, output = invoke_cli(["why", str(result.run_dir), unreadable])
    assert "rejected at step 'read': malformed-json" in output
    assert "detail: d.jsonl:3: Expecting value at column 1" in output
    kept = result.dataset("train")[0]["id"]
    code, output = invoke_cli(["why", str(result.run_dir), kept])
    assert f"{kept}  (source colours, human, from d.jsonl:1)" in output
    assert "kept in the train split: dataset/train.jsonl line 1" in output
    assert "passed: read, length" in output


def test_why_with_an_unknown_id_or_folder_is_one_line(run_recipe, tmp_path):
    result = run_recipe(RECIPE, files={"d.jsonl": DATA})
    code, output = invoke_cli(["why", str(result.run_dir), "ffffffff"])
    assert code == 2 and output.startswith("error: no record whose id starts with 'ffffffff'")
    code, output = invoke_cli(["why", str(tmp_path / "nowhere"), "ffffffff"])
    assert code == 2 and "not a curate run folder" in output
    code, output = invoke_cli(["why", str(result.run_dir), "ff"])
    assert code == 2 and "too short" in output


def test_every_row_of_the_run_can_be_explained(run_recipe):
    result = run_recipe(RECIPE, files={"d.jsonl": DATA})
    ids = [r["id"] for step in ("read", "length") for r in result.rejected(step)]
    ids += [r["id"] for r in result.dataset("train")]
    assert len(ids) == result.manifest["final"]["input"] == 3
    for record_id in ids:
        code, output = invoke_cli(["why", str(result.run_dir), record_id])
        assert code == 0 and record_id in output


def rewriting_plugin():
    import types

    from curate import hookimpl
    from curate.stages import Stage

    class Shout(Stage):
        name = "shout"

        def process(self, records):
            for record in records:
                yield record.revised([{**m, "content": m["content"].upper()}
                                      for m in record.messages])

    module = types.ModuleType("shout")
    module.register_stages = hookimpl(lambda register: register(Shout))
    return module


def test_why_follows_a_record_that_a_stage_rewrote(run_recipe, curate_plugin):
    curate_plugin(rewriting_plugin(), name="shout")
    result = run_recipe(RECIPE.replace('use = "length"', 'use = "shout"\n[[stages]]\nuse = "length"'),
                        files={"d.jsonl": DATA})
    assert result.exit_code == 0, result.output
    original = [r for r in result.kept("read") if "colour" in r["messages"][0]["content"]][0]["id"]
    [final] = result.dataset("train")
    code, output = invoke_cli(["why", str(result.run_dir), original])
    assert code == 0, output
    assert output.splitlines() == [
        f"{final['id']}  (source colours, human, from d.jsonl:1)",
        f"  step 'shout' revised {original} into {final['id']}",
        "  kept in the train split: dataset/train.jsonl line 1",
        "  passed: read, shout, length",
    ]


def test_why_after_until_reports_kept_records_and_ignores_leftover_steps(run_recipe):
    full = run_recipe(RECIPE, files={"d.jsonl": DATA})
    short = full.rejected("length")[0]["id"]
    partial = run_recipe(RECIPE, args=["--until", "read"])
    code, output = invoke_cli(["why", str(partial.run_dir), short])
    assert code == 0
    assert "kept through step 'read', where the run stopped (--until)" in output
    assert "rejected" not in output


def test_why_finds_a_record_by_the_input_row_it_was_read_from(run_recipe, monkeypatch):
    rows = DATA + '{"instruction": "Name a colour.", "output": "Blue is a colour."}\n'
    result = run_recipe(RECIPE.replace('use = "length"', 'use = "exact-dedupe"\n[[stages]]\n'
                                       'use = "length"').replace('"d.jsonl"', '"data/d.jsonl"'),
                        files={"data/d.jsonl": rows})
    assert result.exit_code == 0, result.output
    kept = result.dataset("train")[0]["id"]
    code, output = invoke_cli(["why", str(result.run_dir), "data/d.jsonl:4"])
    assert code == 0, output
    assert output.splitlines() == [
        f"{kept}  (source colours, human, from data/d.jsonl:4)",
        "  rejected at step 'exact-dedupe': exact-duplicate",
        f"  detail: exact duplicate of {kept} from data/d.jsonl:1: same prompt+response after"
        f" normalising Unicode (NFKC), case, whitespace, curly quotes and emphasis marks; 2"
        f" copies, kept the first",
        "  passed: read",
    ]
    code, output = invoke_cli(["why", str(result.run_dir), "d.jsonl:1"])
    assert code == 0 and "kept in the train split: dataset/train.jsonl line 1" in output
    assert output.count(kept) == 1
    monkeypatch.chdir(result.recipe.parent.parent)  # the path as typed from another folder
    from_here = f"{result.recipe.parent.name}/data/d.jsonl:1"
    assert invoke_cli(["why", str(result.run_dir), from_here])[1] == output
    code, output = invoke_cli(["why", str(result.run_dir), "d.jsonl:3"])
    assert "rejected at step 'read': malformed-json" in output
    code, output = invoke_cli(["why", str(result.run_dir), "d.jsonl:9"])
    assert code == 2 and output == (f"error: no record read from 'd.jsonl:9' in {result.run_dir}:"
                                   f" give an input row as `curate why` shows it after \"from\""
                                   f" (data/reviews.jsonl:13), or a record id\n")


def test_why_by_input_row_follows_a_rewritten_record(run_recipe, curate_plugin):
    curate_plugin(rewriting_plugin(), name="shout")
    shouting = RECIPE.replace('use = "length"', 'use = "shout"\n[[stages]]\nuse = "length"')
    result = run_recipe(shouting, files={"d.jsonl": DATA})
    [final] = result.dataset("train")
    code, output = invoke_cli(["why", str(result.run_dir), "d.jsonl:1"])
    assert code == 0, output
    assert output.splitlines()[0] == f"{final['id']}  (source colours, human, from d.jsonl:1)"
    assert output.count(final["id"]) == 2  # the record and its revision, once


def fixing_plugin():
    import types

    from curate import hookimpl
    from curate.stages import Stage

    class FixTypo(Stage):
        name = "fix-typo"

        def process(self, records):
            for record in records:
                if "colur" in record.prompt:
                    yield record.revised([{**m, "content": m["content"].replace("colur", "colour")}
                                          for m in record.messages])
                else:
                    yield record

    module = types.ModuleType("fix_typo")
    module.register_stages = hookimpl(lambda register: register(FixTypo))
    return module


def test_why_follows_a_revision_to_its_own_record_not_one_with_the_same_text(run_recipe,
                                                                            curate_plugin):
    curate_plugin(fixing_plugin(), name="fix-typo")
    rows = ('{"instruction": "Name a colour.", "output": "Blue is a colour."}\n'
            '{"instruction": "Name a colur.", "output": "Blue is a colour."}\n')
    result = run_recipe(RECIPE.replace('use = "length"', 'use = "fix-typo"\n[[stages]]\n'
                                       'use = "exact-dedupe"'), files={"d.jsonl": rows})
    assert result.exit_code == 0, result.output
    typo = [r["id"] for r in result.kept("read") if "colur" in r["messages"][0]["content"]][0]
    [human] = result.dataset("train")
    code, output = invoke_cli(["why", str(result.run_dir), typo])
    assert code == 0, output
    assert output.splitlines() == [
        f"{human['id']}  (source colours, human, from d.jsonl:2)",
        f"  step 'fix-typo' revised {typo} into {human['id']}",
        "  rejected at step 'exact-dedupe': exact-duplicate",
        f"  detail: exact duplicate of {human['id']} from d.jsonl:1: same prompt+response after"
        f" normalising Unicode (NFKC), case, whitespace, curly quotes and emphasis marks; 2"
        f" copies, kept the first",
        "  passed: read, fix-typo",
    ]


def test_why_text_shows_what_the_step_judged(run_recipe):
    result = run_recipe(RECIPE, files={"d.jsonl": DATA})
    row = result.rejected("length")[0]
    code, output = invoke_cli(["why", str(result.run_dir), row["id"], "--text"])
    assert code == 0, output
    for message in row["messages"]:
        assert f"  {message['role']}: {message['content'].splitlines()[0]}" in output
    code, output = invoke_cli(["why", str(result.run_dir), "d.jsonl:3", "--text"])
    assert "  row as read: " in output  # the malformed line, as read
