"""The data helpers of curate.testing write what they promise: TOML that tomllib reads back to
the same values, and JSONL that json reads back row by row."""

import json
import tomllib

import pytest

from curate.testing import jsonl, messages_row, source_table, toml_value


def test_source_table_reads_back_as_the_values_given():
    options = {"columns": {"instruction": "question", "odd key": "x"}, "max_bad_fraction": 0.0,
               "delimiter": "\t", "note": 'a "quoted" caf\u00e9 \U0001f600 \x00\x7f', "on": True,
               "path": ["a.jsonl", "more/*.jsonl"], "tables": [{"a": 1}, {"b": [2, 3]}]}
    text = source_table("qa", options.pop("path"), "csv", **options)
    assert tomllib.loads(text) == {"sources": [{
        "name": "qa", "use": "csv", "path": ["a.jsonl", "more/*.jsonl"], **options}]}


def test_toml_has_no_null():
    with pytest.raises(TypeError, match="TOML has no null"):
        toml_value({"key": None})


def test_jsonl_writes_one_row_a_line_and_escapes_what_utf8_cannot_hold():
    rows = [messages_row("Hi?", "Hello.", system="Be brief."), {"text": "lone \ud800"}]
    text = jsonl(*rows)
    assert [json.loads(line) for line in text.splitlines()] == rows
    assert text.encode("utf-8").isascii()
    assert jsonl({"text": "caf\u00e9"}, ensure_ascii=False) == '{"text": "café"}\n'
