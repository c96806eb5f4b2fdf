"""Fixtures of the generate tests: a scripted OpenAI-compatible server on 127.0.0.1
(tests/support/openai_server.py) and recipes whose generate stage talks to it."""

import importlib.util
import sys
from pathlib import Path

import pytest

from curate.testing import jsonl, source_table, toml_value

KEY = "sk-test-7f3a9c1e5b2d4680"
KEY_ENV = "CURATE_TEST_OPENAI_KEY"
MODEL = "test-model"


def _load(name: str):
    path = Path(__file__).resolve().parents[2] / "support" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


openai_server = _load("openai_server")

QA = [{"prompt": f"Question {i} about kettles?", "completion": f"Answer {i}: boil it twice."}
      for i in range(4)]
CHATS = [{"prompt": f"Where is my order {i}?", "completion": f"Order {i} ships on Monday."}
         for i in range(2)]
FILES = {"qa.jsonl": jsonl(*QA), "chats.jsonl": jsonl(*CHATS)}


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
            f"[split]\neval_fraction = 0\n")
