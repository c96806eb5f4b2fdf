"""Pytest helpers for curate and for plugin authors (loaded as a pytest plugin when curate is
installed).

    def test_my_stage(curate_plugin, run_recipe):
        curate_plugin(my_plugin_module)
        result = run_recipe('''
            [[sources]]
            name = "data"
            use = "jsonl"
            path = "data.jsonl"
            [[stages]]
            use = "my-stage"
        ''', files={"data.jsonl": '{"prompt": "hi", "completion": "hello there"}\\n'})
        assert result.exit_code == 0, result.output
        assert result.rejected("my-stage") == []
"""

from __future__ import annotations

import hashlib
import json
import re
import textwrap
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class RunResult:
    """What `curate run` printed and left in its run folder."""

    exit_code: int
    output: str
    run_dir: Path
    recipe: Path

    @property
    def manifest(self) -> dict:
        return json.loads((self.run_dir / "manifest.json").read_text(encoding="utf-8"))

    def dataset(self, split: str = "train") -> list[dict]:
        path = self.run_dir / "dataset" / f"{split}.jsonl"
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    def step_dir(self, name: str) -> Path:
        matches = sorted((self.run_dir / "stages").glob(f"[0-9][0-9]-{name}"))
        if not matches:
            raise KeyError(f"no step '{name}' in {self.run_dir}")
        return matches[0]

    def rejected(self, step: str) -> list[dict]:
        import pyarrow.parquet as pq

        return pq.read_table(self.step_dir(step) / "rejected.parquet").to_pylist()

    def kept(self, step: str) -> list[dict]:
        import pyarrow.parquet as pq

        return pq.read_table(self.step_dir(step) / "kept.parquet").to_pylist()

    def origins(self, step: str) -> list[str]:
        """Where each record `step` kept was read from (its meta["from"]: "data.jsonl:3")."""
        return [json.loads(row["meta"])["from"] for row in self.kept(step)]

    def rejections(self, step: str) -> list[tuple[str, str]]:
        """(reason, detail) of each record `step` rejected, in order."""
        return [(row["reason"], row["detail"]) for row in self.rejected(step)]

    def answers(self, split: str = "train") -> list[str]:
        """The last message (the answer) of each record of a dataset split, in order."""
        return [record["messages"][-1]["content"] for record in self.dataset(split)]


def assert_complete(result: RunResult) -> dict:
    """The run succeeded and accounted for every input row and every added (generated) record;
    returns its manifest."""
    assert result.exit_code == 0, result.output
    manifest = result.manifest
    assert manifest["status"] == "complete"
    final = manifest["final"]
    assert final["accounted"] == final["input"] + final.get("added", 0)
    return manifest


def assert_clear_error(result: RunResult, *fragments: str) -> str:
    """A user mistake: one line of output (run the recipe with -q), exit 2, no traceback, each
    fragment in the message, and no run folder claiming success."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.output.startswith("error: "), result.output
    assert result.output.count("\n") == 1, result.output
    for fragment in fragments:
        assert fragment in result.output, result.output
    manifest = result.run_dir / "manifest.json"
    assert not manifest.exists() or result.manifest["status"] != "complete"
    return result.output


def output_digests(run_dir: Path) -> dict[str, str]:
    """The sha256 of every step table and dataset file of a run folder, by relative path: equal
    digests mean two runs (other worker counts, a resumed run) wrote the same bytes."""
    files = [*sorted((run_dir / "stages").rglob("*.parquet")),
             *sorted((run_dir / "dataset").glob("*.jsonl"))]
    return {str(path.relative_to(run_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in files}


def jsonl(*rows: dict, ensure_ascii: bool = True) -> str:
    """The text of a JSONL file holding `rows`, one JSON object a line (for run_recipe's files).
    The default escapes non-ASCII text, so even a lone surrogate can be written."""
    return "".join(json.dumps(row, ensure_ascii=ensure_ascii) + "\n" for row in rows)


def alpaca_row(number: int) -> dict:
    """A numbered alpaca-format row whose answer passes the default length limits."""
    return {"instruction": f"Question {number}?", "output": f"A long enough answer {number}."}


def messages_row(prompt: str, response: str, system: str | None = None) -> dict:
    """A messages-format row: an optional system prompt, one question and its answer."""
    messages = [{"role": "system", "content": system}] if system is not None else []
    return {"messages": [*messages, {"role": "user", "content": prompt},
                         {"role": "assistant", "content": response}]}


def toml_value(value: Any) -> str:
    """`value` written as TOML: a string, number, boolean, list, or dict (an inline table)."""
    if isinstance(value, dict):
        pairs = (f"{_toml_key(key)} = {toml_value(item)}" for key, item in value.items())
        return "{" + ", ".join(pairs) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if value is None:
        raise TypeError("TOML has no null: leave the key out")
    # JSON's string escapes are TOML's, except that TOML also forbids a raw DEL.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_value(key)


def source_table(name: str, path: str | list[str], use: str = "jsonl", **options: Any) -> str:
    """A recipe's `[[sources]]` table: source_table("qa", "qa.jsonl", format="alpaca")."""
    keys = {"name": name, "use": use, "path": path, **options}
    return "[[sources]]\n" + "".join(f"{key} = {toml_value(value)}\n"
                                      for key, value in keys.items())


def invoke_cli(args: list[str]) -> tuple[int, str]:
    """Run the curate CLI in this process; returns (exit code, stdout and stderr together)."""
    from click.testing import CliRunner

    from curate.cli import build_cli

    result = CliRunner().invoke(build_cli(), args, catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def curate_plugin() -> Iterator[Any]:
    """Call `curate_plugin(plugin, name=...)` to register a plugin object for this test only."""
    from curate.pluginmanager import plugins_registered

    with ExitStack() as stack:
        def register(plugin: Any, name: str | None = None) -> None:
            label = name or getattr(plugin, "__name__", None) or type(plugin).__name__
            stack.enter_context(plugins_registered((label, plugin)))

        yield register


@pytest.fixture
def run_recipe(tmp_path: Path):
    """Call `run_recipe(toml_text, files={...}, args=[...])`: writes the recipe and data files in
    a temporary folder, runs `curate run`, and returns a RunResult."""

    def run(text: str, files: dict[str, str | bytes] | None = None,
            args: list[str] | None = None, name: str = "recipe") -> RunResult:
        for relative, content in (files or {}).items():
            path = tmp_path / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(textwrap.dedent(content), encoding="utf-8")
        recipe = tmp_path / f"{name}.toml"
        recipe.write_text(textwrap.dedent(text), encoding="utf-8")
        run_dir = tmp_path / "runs" / name
        code, output = invoke_cli(["run", str(recipe), "--run-dir", str(run_dir), *(args or [])])
        return RunResult(code, output, run_dir, recipe)

    return run
