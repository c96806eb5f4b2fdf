"""The file sources (jsonl, json, csv, parquet) read by real runs over real files: rows, their
locations, glob patterns and lists, paths relative to the recipe, and unreadable input."""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.testing import (alpaca_row, assert_clear_error, assert_complete, invoke_cli, jsonl,
                            source_table)


def recipe(use: str, path, **keys) -> str:
    """One source; every record goes to train, in input order."""
    return source_table("data", path, use, **keys) + "\n[split]\neval_fraction = 0.0\n"


# jsonl


def test_jsonl_reads_one_object_a_line(run_recipe):
    result = run_recipe(recipe("jsonl", "data.jsonl"),
                        files={"data.jsonl": jsonl(*map(alpaca_row, range(3)))})
    assert_complete(result)
    assert result.origins("read") == ["data.jsonl:1", "data.jsonl:2", "data.jsonl:3"]


def test_jsonl_with_windows_line_ends_and_byte_order_mark(run_recipe):
    data = ("\ufeff" + jsonl(alpaca_row(0), alpaca_row(1))).replace("\n", "\r\n").encode("utf-8")
    result = run_recipe(recipe("jsonl", "data.jsonl"), files={"data.jsonl": data})
    assert_complete(result)
    assert result.answers() == ["A long enough answer 0.", "A long enough answer 1."]


def test_jsonl_rejects_invalid_utf8_and_non_objects_by_line(run_recipe):
    good = jsonl(*map(alpaca_row, range(4))).encode()
    data = good + b'{"instruction": "caf\xe9", "output": "x"}\n' + b'"just text"\n'
    result = run_recipe(recipe("jsonl", "data.jsonl", max_bad_fraction=0.5),
                        files={"data.jsonl": data})
    manifest = assert_complete(result)
    assert result.rejections("read") == [
        ("invalid-utf8", "data.jsonl:5: invalid UTF-8 at byte 20 of the line: re-save the file"
                         " as UTF-8"),
        ("not-an-object", "data.jsonl:6: expected a JSON object, found str")]
    assert manifest["sources"][0]["unreadable"] == 2
    assert "caf\ufffd" in result.rejected("read")[0]["raw"]


def test_jsonl_of_invalid_utf8_past_max_bad_fraction_stops_the_run(run_recipe):
    data = b'{"instruction": "caf\xe9", "output": "x"}\n' * 2
    result = run_recipe(recipe("jsonl", "data.jsonl"), files={"data.jsonl": data}, args=["-q"])
    assert_clear_error(result, "2 of 2 rows of source 'data' are unreadable",
                       "data.jsonl:1: invalid UTF-8 at byte 20")


def test_a_line_cut_off_inside_a_string_says_so(run_recipe):
    data = jsonl(*map(alpaca_row, range(10))) + '{"instruction": "cut off\n'
    result = run_recipe(recipe("jsonl", "data.jsonl"), files={"data.jsonl": data})
    assert_complete(result)
    assert result.rejections("read") == [("malformed-json", "data.jsonl:11: Unterminated string"
                                                            " starting at column 17")]
    assert result.rejected("read")[0]["raw"] == '{"instruction": "cut off'


def test_objects_back_to_back_on_a_line_say_to_split_them(run_recipe):
    data = jsonl(*map(alpaca_row, range(11))).replace("}\n", "}", 1)
    result = run_recipe(recipe("jsonl", "data.jsonl"), files={"data.jsonl": data})
    assert_complete(result)
    [(reason, detail)] = result.rejections("read")
    assert detail.startswith("data.jsonl:1: Extra data at column ")
    assert detail.endswith(": a second JSON value starts there: put one object on each line")


def test_lines_ended_by_a_lone_carriage_return_say_so(run_recipe):
    data = jsonl(*map(alpaca_row, range(3))).replace("\n", "\r").encode()
    result = run_recipe(recipe("jsonl", "data.jsonl"), files={"data.jsonl": data}, args=["-q"])
    assert_clear_error(result, "data.jsonl:1: Extra data at column ", "the file's lines end in a"
                               " lone carriage return (\\r), not a newline (\\n): convert its"
                               " line ends")


# compressed files


@pytest.mark.parametrize("use, name, text", [
    ("jsonl", "data.jsonl.gz", jsonl(alpaca_row(0), alpaca_row(1))),
    ("json", "data.json.gz", json.dumps([alpaca_row(0), alpaca_row(1)])),
    ("csv", "data.csv.gz", "instruction,output\nSay hi.,A long enough answer 0.\n"
                           "Again?,A long enough answer 1.\n")])
def test_gzip_files_are_read_as_they_are(run_recipe, use, name, text):
    result = run_recipe(recipe(use, name), files={name: gzip.compress(text.encode())})
    assert_complete(result)
    assert result.answers() == ["A long enough answer 0.", "A long enough answer 1."]


def test_damaged_gzip_data_is_a_clear_error(run_recipe):
    data = gzip.compress(jsonl(*map(alpaca_row, range(200))).encode())
    result = run_recipe(recipe("jsonl", "data.jsonl.gz"), files={"data.jsonl.gz": data[:-40]},
                        args=["-q"])
    assert_clear_error(result, "data.jsonl.gz: damaged gzip data (", "compress or download the"
                                                                      " file again")


def test_a_file_compressed_otherwise_says_to_decompress_it(run_recipe):
    data = b"\x28\xb5\x2f\xfd" + bytes(range(200))
    result = run_recipe(recipe("jsonl", "data.jsonl.zst"), files={"data.jsonl.zst": data},
                        args=["-q"])
    assert_clear_error(result, "data.jsonl.zst: the file is zstd-compressed: decompress it first")


# json


def test_json_list(run_recipe):
    data = json.dumps([alpaca_row(0), alpaca_row(1)], indent=2)
    result = run_recipe(recipe("json", "data.json"), files={"data.json": data})
    assert_complete(result)
    assert result.origins("read") == ["data.json[0]", "data.json[1]"]


def test_json_object_with_rows_under_field(run_recipe):
    data = json.dumps({"version": 2, "data": [alpaca_row(0), alpaca_row(1)]})
    result = run_recipe(recipe("json", "data.json", field="data"), files={"data.json": data})
    assert_complete(result)
    assert result.answers() == ["A long enough answer 0.", "A long enough answer 1."]


def test_json_with_byte_order_mark(run_recipe):
    data = ("\ufeff" + json.dumps([alpaca_row(0)])).encode("utf-8")
    result = run_recipe(recipe("json", "data.json"), files={"data.json": data})
    assert_complete(result)


def test_json_object_without_field_names_the_keys_holding_lists(run_recipe):
    data = json.dumps({"version": 2, "rows": [alpaca_row(0)]})
    result = run_recipe(recipe("json", "data.json"), files={"data.json": data}, args=["-q"])
    assert_clear_error(result, "data.json: expected a JSON list of rows, found dict",
                       'field = "..."', "keys holding lists: rows")


def test_json_field_that_is_missing(run_recipe):
    data = json.dumps({"rows": [alpaca_row(0)]})
    result = run_recipe(recipe("json", "data.json", field="data"), files={"data.json": data},
                        args=["-q"])
    assert_clear_error(result, "data.json: no top-level key 'data'", "keys holding lists: rows")


def test_json_that_is_not_a_list(run_recipe):
    result = run_recipe(recipe("json", "data.json"), files={"data.json": '"rows"'}, args=["-q"])
    assert_clear_error(result, "data.json: expected a JSON list of rows, found str")


def test_json_syntax_error_names_line_and_column(run_recipe):
    data = '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": }\n]'
    result = run_recipe(recipe("json", "data.json"), files={"data.json": data}, args=["-q"])
    assert_clear_error(result, "data.json:3:19: invalid JSON: Expecting value", 'use = "jsonl"')


def test_json_invalid_utf8_is_a_clear_error(run_recipe):
    data = b'[{"instruction": "caf\xe9", "output": "x"}]'
    result = run_recipe(recipe("json", "data.json"), files={"data.json": data}, args=["-q"])
    assert_clear_error(result, "data.json: invalid UTF-8 at byte 21")


def test_json_items_that_are_not_objects_are_rejected(run_recipe):
    data = json.dumps([alpaca_row(i) for i in range(9)] + [["not", "a", "row"]])
    result = run_recipe(recipe("json", "data.json"), files={"data.json": data})
    assert_complete(result)
    assert result.rejections("read") == [("not-an-object",
                                          "data.json[9]: expected a JSON object, found list")]


# csv

CSV = "instruction,input,output\nSay hi.,,Hello there.\nTranslate.,Hallo,Hello.\n"


def test_csv_with_header(run_recipe):
    result = run_recipe(recipe("csv", "data.csv"), files={"data.csv": CSV})
    assert_complete(result)
    assert result.origins("read") == ["data.csv:2", "data.csv:3"]
    assert [r["messages"][0]["content"] for r in result.dataset()] == ["Say hi.",
                                                                        "Translate.\n\nHallo"]


def test_csv_with_another_delimiter(run_recipe):
    data = CSV.replace(",", "\t")
    result = run_recipe(recipe("csv", "data.tsv", delimiter="\t"), files={"data.tsv": data})
    assert_complete(result)
    assert result.answers() == ["Hello there.", "Hello."]


def test_csv_quoted_fields_may_span_lines_and_rows_are_located_where_they_start(run_recipe):
    data = ('instruction,output\n"Write a poem,\nin two lines.","Roses are red,\n""violets"" are'
            ' blue."\n\nNext?,The next answer.\n')
    result = run_recipe(recipe("csv", "data.csv"), files={"data.csv": data.encode()})
    assert_complete(result)
    assert result.origins("read") == ["data.csv:2", "data.csv:6"]
    first = result.dataset()[0]["messages"]
    assert first[0]["content"] == "Write a poem,\nin two lines."
    assert first[1]["content"] == 'Roses are red,\n"violets" are blue.'


def csv_with_a_quote_never_closed(before: int, after: int) -> str:
    rows = [f"Question {i}?,Answer {i} is long enough." for i in range(before + after)]
    return "\n".join(["instruction,output", *rows[:before], '"Unclosed quote?,Answer x.',
                      *rows[before:]]) + "\n"


def test_csv_quote_never_closed_is_a_clear_error_naming_its_line(run_recipe):
    result = run_recipe(recipe("csv", "c.csv"), files={"c.csv": csv_with_a_quote_never_closed(
        900, 100)}, args=["-q"])
    assert_clear_error(result, "c.csv:902: a quoted field opened here is never closed: it runs"
                               " to the end of the file, taking in the 100 lines after it:"
                               " close the quote")


def test_csv_quote_never_closed_on_the_last_line_rejects_that_row(run_recipe):
    result = run_recipe(recipe("csv", "c.csv"), files={"c.csv": csv_with_a_quote_never_closed(
        20, 0)})
    assert_complete(result)
    assert result.rejections("read") == [("unclosed-quote", "c.csv:22: a quoted field opened"
                                                            " here is never closed: close the"
                                                            " quote")]
    assert len(result.dataset()) == 20


def test_csv_header_with_a_quote_never_closed(run_recipe):
    result = run_recipe(recipe("csv", "c.csv"), files={"c.csv": '"instruction,output\na,b\n'},
                        args=["-q"])
    assert_clear_error(result, "c.csv:1: a quoted field opened here is never closed")


def test_csv_last_row_quoted_across_lines_and_lenient_quotes_still_read(run_recipe):
    data = 'instruction,output\nSay "hi".,"Hello ""there"" x"y\nOne,"Two\nlines."'
    result = run_recipe(recipe("csv", "data.csv"), files={"data.csv": data})
    assert_complete(result)
    assert result.answers() == ['Hello "there" xy', "Two\nlines."]


def test_csv_rows_with_the_wrong_number_of_fields_are_rejected(run_recipe):
    data = CSV + "only one field\na,b,c,d\n"
    result = run_recipe(recipe("csv", "data.csv", max_bad_fraction=0.5),
                        files={"data.csv": data})
    assert_complete(result)
    assert result.rejections("read") == [
        ("wrong-column-count", "data.csv:4: the row has 1 fields, the header has 3"),
        ("wrong-column-count", "data.csv:5: the row has 4 fields, the header has 3")]
    assert result.rejected("read")[1]["raw"] == "a,b,c,d"


def test_csv_invalid_utf8_row_is_rejected(run_recipe):
    data = CSV.encode() * 1 + b"Caf\xe9?,,Coffee place.\n" + b"More?,,More answers.\n" * 8
    result = run_recipe(recipe("csv", "data.csv"), files={"data.csv": data})
    assert_complete(result)
    assert result.rejections("read") == [("invalid-utf8", "data.csv:4: invalid UTF-8 in the"
                                                          " row: re-save the file as UTF-8")]
    assert result.rejected("read")[0]["raw"] == "Caf\ufffd?,,Coffee place."


def test_csv_invalid_utf8_header_is_a_clear_error(run_recipe):
    data = b"instruc\xf6tion,output\nHi?,Hello.\n"
    result = run_recipe(recipe("csv", "data.csv"), files={"data.csv": data}, args=["-q"])
    assert_clear_error(result, "data.csv:1: invalid UTF-8 in the header row")


def test_csv_byte_order_mark_is_not_part_of_the_first_column(run_recipe):
    result = run_recipe(recipe("csv", "data.csv"),
                        files={"data.csv": ("\ufeff" + CSV).encode("utf-8")})
    assert_complete(result)


def test_csv_fields_longer_than_the_csv_module_default(run_recipe):
    long = "word " * 40_000
    result = run_recipe(recipe("csv", "data.csv"),
                        files={"data.csv": f'instruction,output\nWrite a lot.,"{long}"\n'})
    assert_complete(result)
    assert result.answers() == [long]


def test_csv_delimiter_must_be_one_character(run_recipe):
    result = run_recipe(recipe("csv", "data.csv", delimiter=";;"), files={"data.csv": CSV},
                        args=["-q"])
    assert_clear_error(result, "recipe.toml: sources[0].delimiter: expected one character")


def test_csv_with_only_a_header_has_no_rows(run_recipe):
    result = run_recipe(recipe("csv", "data.csv"), files={"data.csv": "instruction,output\n"},
                        args=["-q"])
    assert_clear_error(result, "source 'data' contains no rows")


# parquet


def test_parquet_flat_and_nested_columns(run_recipe, tmp_path):
    pq.write_table(pa.Table.from_pylist([alpaca_row(0), alpaca_row(1)]),
                   tmp_path / "flat.parquet")
    chats = [{"conversations": [{"from": "human", "value": "Hi?"},
                                {"from": "gpt", "value": "Hello there."}]}]
    pq.write_table(pa.Table.from_pylist(chats), tmp_path / "nested.parquet")
    result = run_recipe(source_table("data", "flat.parquet", "parquet") +
                        source_table("chats", "nested.parquet", "parquet"))
    manifest = assert_complete(result)
    assert result.origins("read") == ["flat.parquet row 0", "flat.parquet row 1",
                                      "nested.parquet row 0"]
    assert result.answers()[-1] == "Hello there."
    assert [s["records"] for s in manifest["sources"]] == [2, 1]


def test_parquet_rows_across_batches_keep_their_index(run_recipe, tmp_path):
    rows = [alpaca_row(i) for i in range(5000)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "big.parquet", row_group_size=1000)
    result = run_recipe(recipe("parquet", "big.parquet"))
    assert_complete(result)
    assert result.origins("read")[4321] == "big.parquet row 4321"


def test_a_file_that_is_not_parquet_is_a_clear_error(run_recipe):
    result = run_recipe(recipe("parquet", "data.parquet"), files={"data.parquet": CSV},
                        args=["-q"])
    assert_clear_error(result, "data.parquet: not a readable parquet file")


# Paths, globs and lists


def test_glob_reads_every_matching_file_in_sorted_order(run_recipe):
    files = {"parts/b.jsonl": jsonl(alpaca_row(2)),
             "parts/a.jsonl": jsonl(alpaca_row(0), alpaca_row(1)),
             "parts/c.txt": "not data", "parts/sub/d.jsonl": jsonl(alpaca_row(3))}
    result = run_recipe(recipe("jsonl", "parts/*.jsonl"), files=files)
    assert_complete(result)
    assert result.origins("read") == ["parts/a.jsonl:1", "parts/a.jsonl:2", "parts/b.jsonl:1"]
    everything = run_recipe(recipe("jsonl", "parts/**/*.jsonl"), name="recursive")
    assert everything.origins("read") == ["parts/a.jsonl:1", "parts/a.jsonl:2",
                                          "parts/b.jsonl:1", "parts/sub/d.jsonl:1"]


def test_a_list_of_paths_is_read_in_the_order_given_without_repeats(run_recipe):
    files = {"a.jsonl": jsonl(alpaca_row(0)), "b.jsonl": jsonl(alpaca_row(1)),
             "more/c.jsonl": jsonl(alpaca_row(2))}
    result = run_recipe(recipe("jsonl", ["b.jsonl", "more/*.jsonl", "*.jsonl"]), files=files)
    assert_complete(result)
    assert result.origins("read") == ["b.jsonl:1", "more/c.jsonl:1", "a.jsonl:1"]


def test_a_file_name_with_glob_characters_is_found_by_name(run_recipe):
    result = run_recipe(recipe("jsonl", "data[1].jsonl"),
                        files={"data[1].jsonl": jsonl(alpaca_row(0))})
    assert_complete(result)
    assert result.origins("read") == ["data[1].jsonl:1"]


def test_paths_are_relative_to_the_recipe_not_the_working_directory(tmp_path, monkeypatch):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (project / "data").mkdir(parents=True)
    elsewhere.mkdir()
    (project / "data" / "qa.jsonl").write_text(jsonl(alpaca_row(0)))
    (project / "recipe.toml").write_text(recipe("jsonl", "data/qa.jsonl"))
    monkeypatch.chdir(elsewhere)
    code, output = invoke_cli(["run", "../project/recipe.toml", "--run-dir", "run"])
    assert code == 0, output
    manifest = json.loads((elsewhere / "run" / "manifest.json").read_text())
    assert manifest["final"]["train"] == 1


def test_absolute_paths_outside_the_recipe_folder(run_recipe, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "qa.jsonl"
    outside.write_text(jsonl(alpaca_row(0)))
    result = run_recipe(recipe("jsonl", str(outside)))
    assert_complete(result)
    assert result.origins("read") == [f"{outside}:1"]


def test_a_missing_file_names_the_recipe_key(run_recipe):
    result = run_recipe(recipe("jsonl", "missing.jsonl"), args=["-q"])
    assert_clear_error(result, "recipe.toml: sources[0].path: no file matches 'missing.jsonl'",
                       "relative to the recipe's folder")


def test_a_glob_matching_nothing_names_the_recipe_key(run_recipe):
    result = run_recipe(recipe("jsonl", "parts/*.jsonl"), files={"parts/a.json": "[]"},
                        args=["-q"])
    assert_clear_error(result, "sources[0].path: no file matches 'parts/*.jsonl'")


def test_one_missing_path_in_a_list(run_recipe):
    result = run_recipe(recipe("jsonl", ["a.jsonl", "b.jsonl"]),
                        files={"a.jsonl": jsonl(alpaca_row(0))}, args=["-q"])
    assert_clear_error(result, "sources[0].path: no file matches 'b.jsonl'")


def test_a_file_that_fails_to_read_is_one_line_naming_it(run_recipe):
    # /proc/self/mem opens, then fails at the first read: as a failing disk would
    result = run_recipe(recipe("jsonl", ["a.jsonl", "/proc/self/mem"]),
                        files={"a.jsonl": jsonl(alpaca_row(0))}, args=["-q"])
    assert_clear_error(result, "recipe.toml: sources[0]: cannot read /proc/self/mem:"
                               " Input/output error")


def test_a_json_array_read_as_jsonl_says_to_use_json(run_recipe):
    data = json.dumps([alpaca_row(0), alpaca_row(1)], indent=2)
    result = run_recipe(recipe("jsonl", "data.jsonl"), files={"data.jsonl": data}, args=["-q"])
    assert_clear_error(result, "the file looks like one JSON array, not JSON lines:"
                               " use = \"json\"")


def test_a_file_of_no_readable_row_does_not_suggest_raising_max_bad_fraction(run_recipe):
    result = run_recipe(recipe("jsonl", "data.jsonl"), files={"data.jsonl": "{oops\n{no\n"},
                        args=["-q"])
    assert_clear_error(result, "no row could be read: check the file's format and encoding")


def test_an_empty_list_of_paths(run_recipe):
    result = run_recipe(recipe("jsonl", []), args=["-q"])
    assert_clear_error(result, "sources[0].path: the list of paths is empty")


def test_an_empty_file(run_recipe):
    result = run_recipe(recipe("jsonl", "data.jsonl"), files={"data.jsonl": ""}, args=["-q"])
    assert_clear_error(result, "recipe.toml: sources[0]: source 'data' contains no rows")


def test_changing_a_data_file_rereads_it(run_recipe, tmp_path):
    first = run_recipe(recipe("jsonl", "data.jsonl"), files={"data.jsonl": jsonl(alpaca_row(0))})
    assert_complete(first)
    (tmp_path / "data.jsonl").write_text(jsonl(alpaca_row(0), alpaca_row(1)))
    second = run_recipe(recipe("jsonl", "data.jsonl"))
    assert assert_complete(second)["final"]["train"] == 2


def test_jsonl_and_parquet_sources_estimate_their_rows_for_progress(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curate.sources import SourceContext
    from curate.plugins.sources.files import CsvSource, JsonlSource, ParquetSource

    (tmp_path / "a.jsonl").write_text('{"a": 1}\n{"a": 2}\n{"a": 3}\n')
    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "b.parquet")
    context = SourceContext(tmp_path / "r.toml", "sources[0]")
    assert JsonlSource().estimate_rows(JsonlSource.Options(path="*.jsonl"), context) == 3
    assert ParquetSource().estimate_rows(ParquetSource.Options(path="b.parquet"), context) == 2
    assert CsvSource().estimate_rows(CsvSource.Options(path="b.parquet"), context) is None
    (tmp_path / "c.jsonl.gz").write_bytes(gzip.compress(b'{"a": 1}\n'))
    assert JsonlSource().estimate_rows(JsonlSource.Options(path="c.jsonl.gz"), context) is None
