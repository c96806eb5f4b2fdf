"""The example plugin package (examples/curate-example-source), installed for real with pip and
found by `curate` through its entry point, then in-process through the shipped fixtures."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "curate-example-source"

FAQ = """\
# Title, not a question

## What is **curate**?

It curates `instruction` data.

## Empty?

## Where are the [docs](https://example.org)?

In the *docs* folder.
"""

MORE = """\
## Is a glob read too?

Yes, every file it matches.

## And a list of paths?

Yes, in order.
"""

RECIPE = """\
[[sources]]
name = "faq"
use = "faq-markdown"
path = ["faq.md", "more/*.md"]
format = "prompt-completion"
max_bad_fraction = 0.5

[[stages]]
use = "strip-markdown"
keep_urls = false

[split]
eval_size = 1
"""


def _builds_wheels_offline() -> bool:
    """Whether pip can build with this interpreter's setuptools (--no-build-isolation): that
    needs the `wheel` package, or setuptools 70.1 or newer, which has bdist_wheel itself."""
    setuptools = importlib.util.find_spec("setuptools")
    if importlib.util.find_spec("wheel") is not None or setuptools is None:
        return setuptools is not None
    return any((Path(p) / "command" / "bdist_wheel.py").exists()
               for p in setuptools.submodule_search_locations)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A folder holding the pip-installed example package, for PYTHONPATH."""
    work = tmp_path_factory.mktemp("example-plugin")
    # pip builds in the tree it is given: build a copy, so the repository stays clean
    source = shutil.copytree(EXAMPLE, work / "source",
                             ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    isolation = ["--no-build-isolation"] if _builds_wheels_offline() else []
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--no-deps", *isolation, "--target", str(work / "site"), str(source)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PIP_ROOT_USER_ACTION": "ignore"})
    assert result.returncode == 0, result.stdout + result.stderr
    return work / "site"


def curate(site: Path, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """Run the curate CLI in a new process that sees the installed example plugin."""
    environment = {**os.environ, "PYTHONPATH": str(site), "CURATE_LOAD_PLUGINS": "example_source",
                   **env}
    return subprocess.run([sys.executable, "-c", "from curate.cli import main; main()", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=60, env=environment)


def write(folder: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(text, encoding="utf-8")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.slow
def test_installed_source_reads_faq_into_the_dataset(site, tmp_path):
    write(tmp_path, {"faq.md": FAQ, "more/b.md": MORE, "recipe.toml": RECIPE})
    result = curate(site, tmp_path, "run", "recipe.toml", "--run-dir", "run")
    assert result.returncode == 0, result.stdout + result.stderr
    run = tmp_path / "run"
    train, held_out = (read_jsonl(run / "dataset" / f"{name}.jsonl") for name in ("train", "eval"))
    assert (len(train), len(held_out)) == (3, 1)
    records = train + held_out
    pairs = {r["messages"][0]["content"]: r["messages"][1]["content"] for r in records}
    assert pairs == {"What is **curate**?": "It curates instruction data.",
                     "Where are the [docs](https://example.org)?": "In the docs folder.",
                     "Is a glob read too?": "Yes, every file it matches.",
                     "And a list of paths?": "Yes, in order."}
    rejected = pq.read_table(run / "stages" / "00-read" / "rejected.parquet").to_pylist()
    assert [(r["reason"], r["detail"].split(": ")[0]) for r in rejected] == [
        ("empty-answer", "faq.md:7")]
    kept = pq.read_table(run / "stages" / "00-read" / "kept.parquet").to_pylist()
    assert [json.loads(r["meta"])["from"] for r in kept] == [
        "faq.md:3", "faq.md:9", "more/b.md:1", "more/b.md:5"]
    assert json.loads((run / "manifest.json").read_text())["versions"]["plugins"][
        "example_source"] == "0.1.0"


@pytest.mark.slow
def test_sample_recipe_runs(site):
    folder = site.parent / "source"
    result = curate(site, folder, "run", "recipe.toml", "--run-dir", str(site.parent / "sample"))
    assert result.returncode == 0, result.stdout + result.stderr
    final = json.loads((site.parent / "sample" / "manifest.json").read_text())["final"]
    assert final == {"input": 11, "added": 0, "rejected": 2, "train": 7, "eval": 2,
                     "accounted": 11}


@pytest.mark.slow
def test_plugins_lists_the_installed_plugin(site, tmp_path):
    result = curate(site, tmp_path, "plugins")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["example_source 0.1.0", "  source: faq-markdown",
                                          "  stage: strip-markdown"]
    listed = json.loads(curate(site, tmp_path, "plugins", "--json").stdout)
    assert listed["plugins"][0]["distribution"] == "curate-example-source"
    assert listed["failed"] == {}


@pytest.mark.slow
def test_disabled_plugin_leaves_an_unknown_source(site, tmp_path):
    write(tmp_path, {"faq.md": FAQ, "more/b.md": MORE, "recipe.toml": RECIPE})
    result = curate(site, tmp_path, "run", "recipe.toml",
                    CURATE_DISABLE_PLUGINS="example_source")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("error: recipe.toml: sources[0].use: unknown source 'faq-markdown'")


@pytest.fixture
def example_plugin(monkeypatch):
    """The example package imported from its source folder, as a plugin author's tests would."""
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    import curate_example_source

    return curate_example_source


def test_question_level_and_code_fences_with_the_shipped_fixtures(example_plugin, curate_plugin,
                                                                   run_recipe):
    curate_plugin(example_plugin, name="example_source")
    result = run_recipe("""
        [[sources]]
        name = "faq"
        use = "faq-markdown"
        path = "faq.md"
        heading_level = 3

        [[stages]]
        use = "strip-markdown"
        roles = ["user", "assistant"]
    """, files={"faq.md": """\
        ## Section: a shallower heading ends an answer

        ### How do I quote a `#` line?

        Inside a fence:

        ```sh
        ### not a heading
        ```
        #### A deeper heading is part of the answer

        ## Next section
    """})
    assert result.exit_code == 0, result.output
    [record] = result.kept("strip-markdown")
    assert [m["content"] for m in record["messages"]] == [
        "How do I quote a # line?",
        "Inside a fence:\n\n```sh\n### not a heading\n```\n"
        "#### A deeper heading is part of the answer"]
    assert json.loads(record["meta"])["from"] == "faq.md:3"
    [read] = result.kept("read")
    assert json.loads(record["meta"])["revised_from"] == read["id"] != record["id"]


def test_out_of_range_option_is_a_recipe_error(example_plugin, curate_plugin, run_recipe):
    curate_plugin(example_plugin, name="example_source")
    result = run_recipe("""
        [[sources]]
        name = "faq"
        use = "faq-markdown"
        path = "faq.md"
        heading_level = 7
    """, files={"faq.md": "## Q?\n\nA.\n"})
    assert result.exit_code == 2
    assert "sources[0].heading_level: expected a value between 1 and 6, found 7" in result.output


def test_empty_answers_are_rejected_with_their_line(example_plugin, curate_plugin, run_recipe):
    curate_plugin(example_plugin, name="example_source")
    result = run_recipe("""
        [[sources]]
        name = "faq"
        use = "faq-markdown"
        path = "faq.md"
        max_bad_fraction = 0.5
    """, files={"faq.md": "## Q?\n\nA long enough answer.\n\n## Empty?\n"})
    assert result.exit_code == 0, result.output
    [rejected] = result.rejected("read")
    assert rejected["reason"] == "empty-answer"
    assert rejected["detail"].startswith("faq.md:5: ")
