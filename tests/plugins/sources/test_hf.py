"""The `datasets` source with the real Hugging Face `datasets` library and local data only:
folders of data files, builders with `data_files`, and `save_to_disk` output."""

import datasets
import pytest

from curate.testing import alpaca_row, assert_clear_error, assert_complete, jsonl, source_table


@pytest.fixture(autouse=True)
def local_only(tmp_path, monkeypatch):
    """No test reaches the hub, and the cache `datasets` writes stays in the test's folder."""
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def recipe(path: str, **keys) -> str:
    return source_table("hf", path, "datasets", **keys) + "\n[split]\neval_fraction = 0.0\n"


def test_local_folder_of_jsonl_files(run_recipe):
    files = {"data/a.jsonl": jsonl(alpaca_row(0), alpaca_row(1)),
             "data/b.jsonl": jsonl(alpaca_row(2))}
    result = run_recipe(recipe("data"), files=files, args=["-q"])
    manifest = assert_complete(result)
    assert result.output == ""
    assert sorted(result.answers()) == [f"A long enough answer {i}." for i in range(3)]
    assert result.origins("read") == ["data row 0", "data row 1", "data row 2"]
    assert manifest["sources"][0]["use"] == "datasets"


def test_local_folder_with_train_and_test_files(run_recipe):
    files = {"data/train.jsonl": jsonl(alpaca_row(0)), "data/test.jsonl": jsonl(alpaca_row(9))}
    result = run_recipe(recipe("data", split="test"), files=files)
    assert_complete(result)
    assert result.answers() == ["A long enough answer 9."]
    assert result.origins("read") == ["data[test] row 0"]


def test_json_builder_with_data_files(run_recipe):
    files = {"parts/1.jsonl": jsonl(alpaca_row(0)), "parts/2.jsonl": jsonl(alpaca_row(1))}
    result = run_recipe(recipe("json", data_files="parts/*.jsonl"), files=files)
    assert_complete(result)
    assert result.answers() == ["A long enough answer 0.", "A long enough answer 1."]
    assert result.origins("read") == ["parts/*.jsonl row 0", "parts/*.jsonl row 1"]


def test_data_files_per_split(run_recipe):
    files = {"train.jsonl": jsonl(alpaca_row(0)), "held.jsonl": jsonl(alpaca_row(1), alpaca_row(2))}
    result = run_recipe(recipe("json", split="test",
                               data_files={"train": "train.jsonl", "test": "held.jsonl"}),
                        files=files)
    assert_complete(result)
    assert result.answers() == ["A long enough answer 1.", "A long enough answer 2."]
    assert result.origins("read") == ["held.jsonl[test] row 0", "held.jsonl[test] row 1"]


def test_csv_builder_with_column_mapping(run_recipe):
    data = "question,answer\nWhat is up?,The sky is up.\n"
    result = run_recipe(recipe("csv", data_files="qa.csv", format="alpaca",
                               columns={"instruction": "question", "output": "answer"}),
                        files={"qa.csv": data})
    assert_complete(result)
    assert result.answers() == ["The sky is up."]


def test_saved_dataset(run_recipe, tmp_path):
    chats = [{"conversations": [{"from": "human", "value": f"Hi {i}?"},
                                {"from": "gpt", "value": f"Hello number {i}."}]} for i in range(3)]
    datasets.Dataset.from_list(chats).save_to_disk(str(tmp_path / "saved"))
    result = run_recipe(recipe("saved"))
    assert_complete(result)
    assert result.answers() == [f"Hello number {i}." for i in range(3)]
    assert result.origins("read")[2] == "saved row 2"


def test_saved_dataset_dict_reads_the_chosen_split(run_recipe, tmp_path):
    saved = datasets.DatasetDict({
        "train": datasets.Dataset.from_list([alpaca_row(0), alpaca_row(1)]),
        "validation": datasets.Dataset.from_list([alpaca_row(7)]),
    })
    saved.save_to_disk(str(tmp_path / "saved"))
    train = run_recipe(recipe("saved"))
    assert train.answers() == ["A long enough answer 0.", "A long enough answer 1."]
    validation = run_recipe(recipe("saved", split="validation"), name="validation")
    assert_complete(validation)
    assert validation.answers() == ["A long enough answer 7."]
    assert validation.origins("read") == ["saved[validation] row 0"]


def test_saved_dataset_dict_without_the_split(run_recipe, tmp_path):
    datasets.DatasetDict({"train": datasets.Dataset.from_list([alpaca_row(0)])}).save_to_disk(
        str(tmp_path / "saved"))
    result = run_recipe(recipe("saved", split="test"), args=["-q"])
    assert_clear_error(result, "no split 'test' (splits: train)")


def test_saved_single_dataset_has_no_other_split(run_recipe, tmp_path):
    datasets.Dataset.from_list([alpaca_row(0)]).save_to_disk(str(tmp_path / "saved"))
    result = run_recipe(recipe("saved", split="test"), args=["-q"])
    assert_clear_error(result, "one saved Dataset without splits", "no split 'test'")


def test_rows_of_the_wrong_shape_are_rejected_with_their_location(run_recipe):
    rows = [alpaca_row(i) for i in range(4)] + [{"instruction": "No answer", "output": None}]
    result = run_recipe(recipe("data"), files={"data/a.jsonl": jsonl(*rows)})
    assert_complete(result)
    assert result.rejections("read") == [
        ("missing-field", "data row 4: missing field 'output'")]


def test_changed_files_in_a_local_folder_are_read_again(run_recipe, tmp_path):
    first = run_recipe(recipe("data"), files={"data/a.jsonl": jsonl(alpaca_row(0))})
    assert assert_complete(first)["final"]["train"] == 1
    cached = run_recipe(recipe("data"))
    assert "cached" in cached.output
    (tmp_path / "data" / "b.jsonl").write_text(jsonl(alpaca_row(1)))
    second = run_recipe(recipe("data"))
    assert assert_complete(second)["final"]["train"] == 2


def test_a_missing_local_folder(run_recipe):
    result = run_recipe(recipe("./data"), args=["-q"])
    assert_clear_error(result, "recipe.toml: sources[0].path: no folder './data'",
                       "relative to the recipe's folder")


def test_a_name_that_is_neither_a_folder_nor_reachable(run_recipe):
    result = run_recipe(recipe("no-such-dataset"), args=["-q"])
    assert_clear_error(result, "sources[0]: cannot load dataset 'no-such-dataset'",
                       "no folder of that name is next to the recipe")


def test_a_data_file_as_path_points_to_data_files(run_recipe):
    result = run_recipe(recipe("qa.jsonl"), files={"qa.jsonl": jsonl(alpaca_row(0))}, args=["-q"])
    assert_clear_error(result, "sources[0].path: 'qa.jsonl' is a file",
                       'path = "json"', 'data_files = "qa.jsonl"')


def test_data_files_matching_nothing(run_recipe):
    result = run_recipe(recipe("json", data_files="parts/*.jsonl"), args=["-q"])
    assert_clear_error(result, "sources[0].data_files: no file matches 'parts/*.jsonl'")


def test_a_broken_json_line_is_a_clear_error_pointing_to_jsonl(run_recipe):
    files = {"data/a.jsonl": jsonl(alpaca_row(0)) + "{broken\n"}
    result = run_recipe(recipe("data"), files=files, args=["-q"])
    assert_clear_error(result, "cannot load dataset 'data'", "JSON parse error",
                       'use = "jsonl"')


def test_files_with_different_columns_are_a_clear_error(run_recipe):
    files = {"data/a.jsonl": jsonl(alpaca_row(0)), "data/b.jsonl": jsonl({"prompt": "p"})}
    result = run_recipe(recipe("data"), files=files, args=["-q"])
    assert_clear_error(result, "cannot load dataset 'data'", "column names don't match")


def test_empty_data_files(run_recipe):
    result = run_recipe(recipe("data"), files={"data/a.jsonl": ""}, args=["-q"])
    assert_clear_error(result, "cannot load dataset 'data'", "hold no rows")


def test_unknown_split(run_recipe):
    result = run_recipe(recipe("data", split="dev"), files={"data/a.jsonl": jsonl(alpaca_row(0))},
                        args=["-q"])
    assert_clear_error(result, "cannot load dataset 'data'", 'Unknown split "dev"')
