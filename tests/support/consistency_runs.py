"""Runs of the consistency stage over jsonl files, what became of each input line, and the
prompt similarity as the stage measures it: shared by the consistency tests."""

import json

from curate.plugins.consistency_near_prompts import prompt_jaccard
from curate.plugins.consistency_text import comparison_key
from curate.testing import jsonl


def recipe(options="", sources=("a",), workers=1):
    parts = [f"[run]\nworkers = {workers}\n"]
    parts += [f'[[sources]]\nname = "{name}"\nuse = "jsonl"\npath = "{name}.jsonl"\n'
              for name in sources]
    parts.append(f'[[stages]]\nuse = "consistency"\n{options}\n[split]\neval_fraction = 0\n')
    return "\n".join(parts)


def run(run_recipe, options, *rows, **files):
    files = {f"{name}.jsonl": jsonl(*data, ensure_ascii=False) for name, data in files.items()}
    files = files or {"a.jsonl": jsonl(*rows, ensure_ascii=False)}
    result = run_recipe(recipe(options, tuple(n[:-6] for n in files)), files=files)
    assert result.exit_code == 0, result.output
    final = result.manifest["final"]
    assert final["accounted"] == final["input"]
    return result


def by_line(result):
    """Input line -> ("kept", meta["consistency"]) or (reason, detail, evidence)."""
    found = {}
    for kept in result.kept("consistency"):
        found[line(kept["meta"])] = ("kept", json.loads(kept["meta"]).get("consistency"))
    for rejected in result.rejected("consistency"):
        found[line(rejected["meta"])] = (rejected["reason"], rejected["detail"],
                                         json.loads(rejected["evidence"]))
    return dict(sorted(found.items()))


def line(meta):
    return json.loads(meta)["from"]


def ids(result):
    return {line(r["meta"]): r["id"] for r in result.kept("read")}


PLAIN = "check_system_prompt = false\nmax_zscore = 0"


def similar(first, second):
    """The word 3-shingle Jaccard similarity of two prompts, as the stage measures it."""
    return prompt_jaccard(comparison_key(first).decode(), comparison_key(second).decode())
