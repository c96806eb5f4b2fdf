"""Recipe validation: every mistake is one line naming the file, the key path and the fix."""

import pytest

from curate.errors import CurateError, RecipeError
from curate.pluginmanager import build_host
from curate.recipe import load_recipe

SOURCE = '[[sources]]\nname = "d"\nuse = "jsonl"\npath = "data.jsonl"\n'


@pytest.fixture(scope="module")
def host():
    return build_host()


def load(tmp_path, host, text):
    (tmp_path / "data.jsonl").touch()
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "d.jsonl").touch()
    path = tmp_path / "recipe.toml"
    path.write_text(text, encoding="utf-8")
    return load_recipe(path, host)


def error_of(tmp_path, host, text) -> str:
    with pytest.raises(CurateError) as caught:
        load(tmp_path, host, text)
    return str(caught.value)


def test_a_valid_recipe_loads_with_defaults(tmp_path, host):
    recipe = load(tmp_path, host, SOURCE + '[[stages]]\nuse = "length"\n')
    assert recipe.name == "recipe" and recipe.run.seed == 0
    assert recipe.sources[0].source_options.format == "auto"
    assert recipe.stages[0].options.min_chars == 1
    assert recipe.split.eval_fraction == 0.1
    assert str(recipe.default_run_dir()) == "runs/recipe"


def test_run_dir_in_the_recipe_is_relative_to_the_recipe(tmp_path, host):
    recipe = load(tmp_path, host, '[run]\ndir = "out/here"\n' + SOURCE)
    assert recipe.default_run_dir() == tmp_path / "out" / "here"


@pytest.mark.parametrize("text, expected", [
    ("[run\n", "recipe.toml: invalid TOML: "),
    ('[runn]\nseed = 1\n' + SOURCE, "recipe.toml: runn: unknown section 'runn': did you mean 'run'?"),
    ('[run]\nseed = "one"\n' + SOURCE, "recipe.toml: run.seed: expected an integer, found string 'one'"),
    ('[run]\nsede = 1\n' + SOURCE, "recipe.toml: run.sede: unknown key 'sede': did you mean 'seed'?"),
    (SOURCE + '[[stages]]\nuse = "lenght"\n',
     "recipe.toml: stages[0].use: unknown stage 'lenght': did you mean 'length'?"),
    (SOURCE + '[[stages]]\nuse = "length"\nmin_char = 3\n',
     "recipe.toml: stages[0].min_char: unknown key 'min_char' for stage 'length': did you mean 'min_chars'?"),
    (SOURCE + '[[stages]]\nuse = "length"\nmin_chars = -1\n',
     "recipe.toml: stages[0].min_chars: expected a value at least 0, found -1"),
    (SOURCE + '[[stages]]\nuse = "length"\nmin_chars = 1.5\n',
     "recipe.toml: stages[0].min_chars: expected an integer, found number 1.5"),
    (SOURCE + '[[stages]]\nmin_chars = 1\n', "recipe.toml: stages[0].use: required key 'use' is missing"),
    ('[[sources]]\nname = "d"\nuse = "jsonl"\n', "recipe.toml: sources[0].path: required key 'path' is missing"),
    ('[[sources]]\nuse = "jsonl"\npath = "x"\n', "recipe.toml: sources[0].name: required key 'name' is missing"),
    (SOURCE.replace('"jsonl"', '"jsnl"'), "recipe.toml: sources[0].use: unknown source 'jsnl': did you mean 'jsonl'?"),
    (SOURCE + 'format = "alpacca"\n', "recipe.toml: sources[0].format: unknown format 'alpacca': did you mean 'alpaca'?"),
    (SOURCE + 'origin = "robot"\n', "recipe.toml: sources[0].origin: expected one of 'human', 'generated', 'rehearsal', found string 'robot'"),
    (SOURCE + 'max_bad_fraction = 2\n', "recipe.toml: sources[0].max_bad_fraction: expected a value between 0.0 and 1.0, found 2"),
    (SOURCE + 'format = "alpaca"\ncolumns = {question = "instruction"}\n',
     "recipe.toml: sources[0].columns.question: 'question' is not a field of format 'alpaca' (fields: input, instruction, output, system); `columns` maps field = \"column\", so write instruction = \"question\""),
    (SOURCE + 'columns = {instruction = 3}\n', "recipe.toml: sources[0].columns.instruction: expected a string, found integer 3"),
    ('[run]\nseed = 1\n', "recipe.toml: sources: the recipe has no [[sources]]: add at least one"),
    (SOURCE + SOURCE, "recipe.toml: sources[1].name: sources name 'd' is used twice"),
    (SOURCE + '[[stages]]\nuse = "length"\n[[stages]]\nuse = "length"\n',
     "recipe.toml: stages[1].name: stages name 'length' is used twice (also stages[0]): give each a distinct"),
    (SOURCE + '[split]\neval_fraction = 0.95\n', "recipe.toml: split.eval_fraction: expected a value between 0.0 and 0.9"),
    (SOURCE + '[split]\neval_fraction = 0.2\neval_size = 50\n',
     "recipe.toml: split: eval_fraction and eval_size both set: keep one"),
    (SOURCE + 'meta_columns = ["from"]\n',
     "recipe.toml: sources[0].meta_columns: 'from' is a meta key curate sets itself"),
    (SOURCE + '[train]\nuse = "qlora"\n',  # refused before any curation runs, not after
     "recipe.toml: model.path: [train] fine-tunes a base model and [model] names none"),
    ('[model]\npath = "org/name"\n' + SOURCE + '[split]\neval_fraction = 0\n[train]\nuse = "qlora"\n'
     '[[evals]]\nuse = "forgetting"\n[[evals]]\nuse = "loss"\n',
     "recipe.toml: evals[1]: evaluation 'loss' scores held-out examples and [split] holds none out"),
    (SOURCE + '[train]\nuse = "qlroa"\n', "recipe.toml: train.use: unknown trainer 'qlroa': did you mean 'qlora'?"),
    (SOURCE + '[[evals]]\nuse = "x"\n', "recipe.toml: evals[0].use: unknown evaluation 'x'"),
    (SOURCE + 'stages = 3\n', "recipe.toml: sources[0].stages: unknown key 'stages' for source 'jsonl'"),
    ('stages = 3\n' + SOURCE, "recipe.toml: stages: expected an array of tables [[stages]]"),
    (SOURCE + '[[stages]]\nuse = "length"\nname = "a b"\n', "recipe.toml: stages[0].name: expected a name of letters"),
    ('[model]\npath = "../models/nope"\n' + SOURCE,
     "recipe.toml: model.path: no folder '../models/nope' (relative to the recipe's folder, "),
    ('[model]\npath = "org/name"\ntokenizer = "models/tiny/tok"\n' + SOURCE,
     "recipe.toml: model.tokenizer: no folder 'models/tiny/tok' (relative to the recipe's"),
    # "data/" is a folder beside the recipe: "data/model" is a path, not a hub id
    ('[model]\npath = "data/model"\n' + SOURCE,
     "recipe.toml: model.path: no folder 'data/model' (relative to the recipe's folder, "),
    ('[run]\neval_fraction = 0.2\n' + SOURCE,
     "recipe.toml: run.eval_fraction: 'eval_fraction' belongs in [split], not here: move it there"),
    (SOURCE + '[split]\nworkers = 2\n', "recipe.toml: split.workers: 'workers' belongs in [run]"),
    (SOURCE + '[[stages]]\nuse = "length"\neval_size = 3\n',
     "recipe.toml: stages[0].eval_size: 'eval_size' belongs in [split], not here"),
    (SOURCE + '[[stages]]\nuse = "rehearsal"\n[stages.source]\nuse = "jsonl"\npath = "data.jsonl"\n'
     'held_out = 5\n', "recipe.toml: stages[0].source.held_out: 'held_out' is an option of stage"
     " 'rehearsal', but it comes after [stages.source], so TOML puts it in that table: move it"
     " above [stages.source]"),
    (SOURCE + '[[stages]]\nuse = "review"\n[[stages]]\nuse = "consistency"\non_conflict = "review"\n',
     "recipe.toml: stages[1]: stage 'consistency' sends records to people for review, and no"
     " review stage after it holds them: add one after it"),
    (SOURCE + '[[stages]]\nuse = "near-dedupe"\nkeep = "score"\nscore_key = ""\n',
     "recipe.toml: stages[0].score_key: keep = \"score\" ranks by this meta key: name one"),
    ('[model]\nmax_length = 512\n' + SOURCE,
     "recipe.toml: model.max_length: [model] sets max_length but names no model: add path"),
    (SOURCE + '[[stages]]\nuse = ["length"]\n', "recipe.toml: stages[0].use: expected the stage"
     " plugin's name as a string, found list"),
    (SOURCE + '[[stages]]\nuse = "length"\nmin_chars = true\n',
     "stages[0].min_chars: expected an integer, found boolean true"),
    ('[model]\npath = "data/d.jsonl"\n' + SOURCE,
     "recipe.toml: model.path: 'data/d.jsonl' is a file: name the model's folder"),
])
def test_mistakes_name_the_file_and_key(tmp_path, host, text, expected):
    message = error_of(tmp_path, host, text)
    assert expected in message
    assert "\n" not in message


def test_toml_syntax_errors_give_the_line(tmp_path, host):
    assert "line 2" in error_of(tmp_path, host, '[run]\nseed = = 1\n')


def test_a_single_bracket_array_section_is_named_with_its_line(tmp_path, host):
    text = SOURCE + '[stages]\nuse = "length"\n\n[[stages]]\nuse = "exact-dedupe"\n'
    assert error_of(tmp_path, host, text).endswith(
        "recipe.toml: invalid TOML: line 5 opens [stages], one table, where each entry is a"
        " table of the array [[stages]]: write [[stages]]")


def test_a_recipe_starting_with_a_byte_order_mark_loads(tmp_path, host):
    (tmp_path / "data.jsonl").touch()
    (tmp_path / "recipe.toml").write_bytes(b"\xef\xbb\xbf" + SOURCE.encode())
    assert load_recipe(tmp_path / "recipe.toml", host).sources[0].name == "d"


def test_control_characters_in_an_error_are_shown_as_escapes(tmp_path):
    from curate.testing import invoke_cli

    # TOML reads the \r of a Windows path as a carriage return.
    (tmp_path / "recipe.toml").write_text(SOURCE.replace('"data.jsonl"', '"data\\reviews.jsonl"'))
    code, output = invoke_cli(["validate", str(tmp_path / "recipe.toml")])
    assert code == 2 and "\r" not in output and "data\\reviews.jsonl" in output, output
    assert "a backslash in \"...\" starts an escape" in output


def test_a_source_path_naming_a_folder_says_so(tmp_path, host):
    (tmp_path / "data").mkdir()
    assert error_of(tmp_path, host, SOURCE.replace('"data.jsonl"', '"data"')).endswith(
        "no file matches 'data' (paths are relative to the recipe's folder, {}): it is a folder;"
        " name the files in it, e.g. 'folder/*.jsonl'".format(tmp_path))


def test_a_key_set_twice_is_named_with_its_line(tmp_path, host):
    message = error_of(tmp_path, host, SOURCE + '[run]\nseed = 1\nname = "x"\nseed = 2')
    assert message.endswith("invalid TOML: key 'seed' is set twice in one table (line 8):"
                            " keep one")
    text = SOURCE + '[run]\nname = """\nseed = 1\nseed = 2\n"""\nseed = 3\nseed = 4\n'
    assert error_of(tmp_path, host, text).endswith("key 'seed' is set twice in one table"
                                                   " (line 11): keep one")


def test_a_missing_recipe_file_is_one_line(tmp_path, host):
    with pytest.raises(CurateError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.toml", host)


def test_a_recipe_that_is_not_utf8_is_reported(tmp_path, host):
    path = tmp_path / "recipe.toml"
    path.write_bytes(b'[run]\nname = "\xff"\n')
    with pytest.raises(RecipeError, match="not UTF-8 text"):
        load_recipe(path, host)


def test_an_unknown_stage_mentions_plugins_that_failed_to_load(tmp_path, monkeypatch):
    broken = type("Broken", (), {})()

    def register_stages(register):
        raise RuntimeError("needs a GPU")

    broken.register_stages = register_stages
    from curate import hookimpl
    hookimpl(broken.register_stages)
    host = build_host(extra_plugins=(("gpu-stages", broken),))
    message = error_of(tmp_path, host, SOURCE + '[[stages]]\nuse = "gpu-dedupe"\n')
    assert "plugins that failed to load: gpu-stages (register_stages: RuntimeError: needs a GPU)" in message


def test_validation_checks_that_input_files_exist(tmp_path, host):
    path = tmp_path / "recipe.toml"
    path.write_text(SOURCE)
    with pytest.raises(RecipeError, match=r"sources\[0\]\.path: no file matches 'data.jsonl'"):
        load_recipe(path, host)


def test_plugin_option_checks_run_at_validation(tmp_path, host):
    message = error_of(tmp_path, host, SOURCE.replace('"jsonl"', '"csv"') + 'delimiter = ";;"\n')
    assert "sources[0].delimiter: expected one character, found ';;'" in message


def test_stage_option_checks_run_at_validation(tmp_path):
    import types
    from dataclasses import dataclass

    from curate import hookimpl
    from curate.options import OptionError
    from curate.stages import Filter

    @dataclass
    class Options:
        low: int = 0
        high: int = 10

    class Ranged(Filter):
        name = "ranged"

        @classmethod
        def check_options(cls, options):
            if options.low > options.high:
                raise OptionError("low", f"low ({options.low}) is above high ({options.high})")

    Ranged.Options = Options
    module = types.ModuleType("ranged")
    module.register_stages = hookimpl(lambda register: register(Ranged))
    host = build_host(extra_plugins=(("ranged", module),))
    message = error_of(tmp_path, host, SOURCE + '[[stages]]\nuse = "ranged"\nlow = 11\n')
    assert "stages[0].low: low (11) is above high (10)" in message


# ---- checks after a review: a reviewer's edit goes only through the stages after it ----------

GENERATE = ('[[stages]]\nuse = "generate"\nbase_url = "http://127.0.0.1:8000/v1"\nmodel = "m"\n'
            'api_key_env = ""\n[stages.strategy]\nuse = "self-instruct"\n')


def stages(*uses: str) -> str:
    """Stage tables, named after their place so that one check may appear twice."""
    return "".join(GENERATE if use == "generate" else
                   f'[[stages]]\nname = "{use}-{index}"\nuse = "{use}"\n'
                   for index, use in enumerate(uses))


@pytest.mark.parametrize("uses, warnings", [
    (["generate", "length", "review"],
     ["stages[2]: review stage 'review-2' has no stage after it that checks records, so a"
      " reviewer's edit reaches the dataset unchecked: add the checks after it (length)"]),
    (["generate", "review"],
     ["stages[1]: review stage 'review-1' has no stage after it that checks records, so a"
      " reviewer's edit reaches the dataset unchecked: add the checks after it (e.g. length,"
      " near-dedupe)"]),
    (["generate", "length", "exact-dedupe", "review", "length"],
     ["stages[3]: review stage 'review-3': a reviewer's edit skips exact-dedupe, which run only"
      " before it: repeat them after it"]),
    (["generate", "exact-dedupe", "review", "near-dedupe"], []),
    (["length", "exact-dedupe", "generate", "review", "length"], []),
    (["generate", "length", "review", "length", "exact-dedupe"], []),
])
def test_a_review_without_checks_after_it_is_a_warning(tmp_path, host, uses, warnings):
    assert load(tmp_path, host, SOURCE + stages(*uses)).warnings == warnings


def test_the_shipped_generate_recipe_checks_after_its_review(host):
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "generate.toml"
    loaded = load_recipe(recipe, host)
    assert loaded.warnings == []
    uses = [spec.use for spec in loaded.stages]
    assert {"length", "near-dedupe"} <= set(uses[uses.index("review") + 1:])


REHEARSAL = '[[stages]]\nuse = "rehearsal"\n[stages.source]\nuse = "jsonl"\npath = "data.jsonl"\n'


def test_a_rehearsal_stage_before_checks_is_a_warning(tmp_path, host):
    early = SOURCE + REHEARSAL + stages("length", "exact-dedupe")
    assert load(tmp_path, host, early).warnings == [
        "stages[0]: rehearsal stage 'rehearsal' comes before length-0, exact-dedupe-1, which can"
        " drop records after it drew its share, so the ratio and the held-out general slice"
        " come out smaller than asked: put it after the curation stages"]
    assert load(tmp_path, host, SOURCE + stages("length") + REHEARSAL).warnings == []
    before_generate = load(tmp_path, host, SOURCE + REHEARSAL + stages("generate", "review",
                                                                         "length")).warnings
    assert ("stages[0]: rehearsal stage 'rehearsal' comes before generate, whose records it"
            " neither counts in the ratio nor screens its general data against") in \
        before_generate[1]


def test_validate_and_run_print_the_warnings(tmp_path):
    from curate.testing import invoke_cli

    (tmp_path / "data.jsonl").write_text('{"instruction": "Hi?", "output": "Hello there."}\n')
    (tmp_path / "recipe.toml").write_text(SOURCE + REHEARSAL + stages("length"))
    code, output = invoke_cli(["validate", str(tmp_path / "recipe.toml")])
    assert code == 0 and "  warning: stages[0]: rehearsal stage 'rehearsal' comes before" in output
