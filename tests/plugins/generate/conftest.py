"""Fixtures of the generate tests: a scripted OpenAI-compatible server on 127.0.0.1
(tests/support/openai_server.py) and recipes whose generate stage talks to it."""

import dataclasses

import pytest

from curate.cli.run import EXIT_REVIEW_PENDING
from curate.testing import invoke_cli, jsonl, source_table, toml_value
from support import openai_server

REVIEW_STAGE = '[[stages]]\nuse = "review"\n'
"""Generated records reach the dataset only through review: every recipe here ends with one."""
KEY = "sk-test-7f3a9c1e5b2d4680"
KEY_ENV = "CURATE_TEST_OPENAI_KEY"
MODEL = "test-model"

QA = [{"prompt": f"Question {i} about kettles?", "completion": f"Answer {i}: boil it twice."}
      for i in range(4)]
CHATS = [{"prompt": f"Where is my order {i}?", "completion": f"Order {i} ships on Monday."}
         for i in range(2)]
FILES = {"qa.jsonl": jsonl(*QA), "chats.jsonl": jsonl(*CHATS)}


@pytest.fixture
def run_recipe(run_recipe):
    """curate.testing's run_recipe, with a reviewer who approves every generated record: a run
    that stops with records waiting for review (exit status 3) is approved wholesale through
    `curate review approve --all` and run again; the result has the output of both runs.
    These tests are about generation; the gate itself is tested in tests/plugins/test_review.py."""

    def run(text, files=None, args=None, name="recipe"):
        result = run_recipe(text, files=files, args=args, name=name)
        if result.exit_code != EXIT_REVIEW_PENDING:
            return result
        code, output = invoke_cli(["review", "approve", str(result.recipe), "--all",
                                   "--run-dir", str(result.run_dir), "--reviewer", "tester"])
        assert code == 0, output
        again = run_recipe(text, args=args, name=name)
        return dataclasses.replace(again, output=result.output + again.output)

    return run


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    with openai_server.OpenAIServer(models=[MODEL], api_key=KEY) as running:
        yield running


@pytest.fixture
def files() -> dict:
    """qa.jsonl (4 pairs) and chats.jsonl (2 pairs), prompt-completion rows."""
    return dict(FILES)


@pytest.fixture
def generate_recipe(server):
    """generate_recipe(strategy, after="", **stage options): the text of a recipe reading qa
    and chats, with a generate stage against `server`, then `after` (more stages)."""
    return lambda strategy, after="", **options: recipe(server, strategy, after, **options)


def recipe(server, strategy: dict, after: str = "", **options) -> str:
    stage = {"use": "generate", "base_url": server.base_url, "model": MODEL,
             "api_key_env": KEY_ENV, "backoff_seconds": 0.01, "concurrency": 2,
             **options, "strategy": strategy}
    lines = "".join(f"{key} = {toml_value(value)}\n" for key, value in stage.items())
    return (f"[run]\nseed = 1\n\n{source_table('qa', 'qa.jsonl')}\n"
            f"{source_table('chats', 'chats.jsonl')}\n[[stages]]\n{lines}\n{after}\n"
            f"{REVIEW_STAGE}\n[split]\neval_fraction = 0\n")

