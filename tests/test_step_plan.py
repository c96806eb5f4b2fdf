"""Planning a run's steps: a stage that counts tokens is cached by the tokenizer's files, not
only by the [model] options that name them."""

import shutil

import pytest
from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

from curate.testing import assert_complete, jsonl

WORDS = "the cat sat on a mat and ran far away good answer fine".split()
# A [model] makes a run render every record with its chat template: the tiny models have one.
CHAT_TEMPLATE = ("{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}"
                 "{{ m.content }} <eot>{% endgeneration %}{% else %}{{ m.content }} {% endif %}"
                 "{% endfor %}")
DATA = jsonl({"prompt": "the cat sat", "completion": "a good answer"},
             {"prompt": "the cat sat on a mat and ran far away", "completion": "a fine answer"})


def save_tiny_model(folder, pre_tokenizer) -> None:
    """A word-level tokenizer that splits text with `pre_tokenizer`, saved as a model folder."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.train_from_iterator([" ".join(WORDS)] * 10,
                                  trainers.WordLevelTrainer(special_tokens=["[UNK]", "<eot>"]))
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]",
                            chat_template=CHAT_TEMPLATE).save_pretrained(folder)


@pytest.fixture
def models_dir(tmp_path):
    """Two tokenizers: "words" counts a word as one token, "letters" each character."""
    save_tiny_model(tmp_path / "words", pre_tokenizers.Whitespace())
    save_tiny_model(tmp_path / "letters", pre_tokenizers.Split(Regex("."), "isolated"))
    return tmp_path


def use_model(models_dir, name: str) -> None:
    """Put tokenizer `name` in the folder the recipe's [model] path names."""
    shutil.rmtree(models_dir / "model", ignore_errors=True)
    shutil.copytree(models_dir / name, models_dir / "model")


def length_recipe() -> str:
    return ('[model]\npath = "model"\n[[sources]]\nname = "d"\nuse = "jsonl"\npath = "d.jsonl"\n'
            '[[stages]]\nuse = "length"\nmax_prompt_tokens = 12\n[split]\neval_fraction = 0\n')


def test_a_tokenizer_swapped_in_the_model_folder_reruns_a_token_limit(run_recipe, models_dir):
    use_model(models_dir, "words")
    first = run_recipe(length_recipe(), files={"d.jsonl": DATA})
    assert_complete(first)
    assert first.rejected("length") == []
    use_model(models_dir, "letters")
    again = run_recipe(length_recipe())
    assert {s["name"]: s["cached"] for s in again.manifest["steps"]} == {
        "read": True, "length": False, "chat-template": False}
    fresh = run_recipe(length_recipe(), name="fresh")
    assert again.dataset("train") == fresh.dataset("train")
    assert [r["location"] for r in again.rejected("length")] == ["d.jsonl:2"]


def test_a_hub_id_tokenizer_is_fingerprinted_by_its_name_and_revision(tmp_path):
    from curate.pluginmanager import get_host
    from curate.recipe import load_recipe
    from curate.runstore import RunFolder
    from curate.step_plan import StepPlanner

    (tmp_path / "d.jsonl").write_text(DATA)

    def length_fingerprint(model: str) -> str:
        recipe_file = tmp_path / "hub.toml"
        recipe_file.write_text(length_recipe().replace('path = "model"', model))
        host = get_host()
        planner = StepPlanner(load_recipe(recipe_file, host), host, RunFolder(tmp_path / "run"))
        return planner.plan()[1].fingerprint

    pinned = length_fingerprint('path = "org/tiny"\nrevision = "v1"')
    assert pinned == length_fingerprint('path = "org/tiny"\nrevision = "v1"')
    assert pinned != length_fingerprint('path = "org/tiny"\nrevision = "v2"')
    assert pinned != length_fingerprint('path = "org/other"\nrevision = "v1"')


def test_rehearsal_counting_tokens_reruns_when_the_tokenizer_changes(run_recipe, models_dir):
    task = [{"prompt": f"Task {i}: the cat sat on a mat", "completion": f"Answer {i}: good"}
            for i in range(20)]
    pool = [{"instruction": f"General {i}: ran far away", "output": f"Reply {i}: fine answer"}
            for i in range(40)]
    text = ('[model]\npath = "model"\n[[sources]]\nname = "task"\nuse = "jsonl"\n'
            'path = "task.jsonl"\nformat = "prompt-completion"\n[[stages]]\nuse = "rehearsal"\n'
            'count = "tokens"\nheld_out = 2\n[stages.source]\nuse = "jsonl"\npath = "pool.jsonl"\n'
            'format = "alpaca"\n[split]\neval_fraction = 0\n')
    use_model(models_dir, "words")
    assert_complete(run_recipe(text, files={"task.jsonl": jsonl(*task),
                                            "pool.jsonl": jsonl(*pool)}))
    use_model(models_dir, "letters")
    again = run_recipe(text)
    assert_complete(again)
    assert {s["name"]: s["cached"] for s in again.manifest["steps"]}["rehearsal"] is False
