"""Bad input to the generate stage, each a single clear line: no API key, a refused key (shown
without the key), the endpoint down, an unknown model, budgets of zero, strategy mistakes."""

import re
import subprocess
import sys
import textwrap

import pytest

from curate.testing import assert_clear_error, invoke_cli, source_table

SELF_INSTRUCT = {"use": "self-instruct", "count": 4, "pairs_per_request": 2,
                 "seeds_per_request": 2}


def test_a_refused_key_is_one_line_without_the_key(server, generate_recipe, files, run_recipe,
                                                   monkeypatch):
    monkeypatch.setenv("CURATE_TEST_OPENAI_KEY", "sk-wrong-key-0000")
    result = run_recipe(generate_recipe(SELF_INSTRUCT), files=files, args=["-q"])
    output = assert_clear_error(result, "refused the API key", "HTTP 401")
    assert "sk-wrong-key-0000" not in output and "***" in output


def test_no_api_key_in_the_environment(server, generate_recipe, files, run_recipe, monkeypatch):
    monkeypatch.delenv("CURATE_TEST_OPENAI_KEY")
    result = run_recipe(generate_recipe(SELF_INSTRUCT), files=files, args=["-q"])
    assert_clear_error(result, "stage 'generate': environment variable CURATE_TEST_OPENAI_KEY"
                               " (api_key_env) is not set, and a request must be sent")
    assert server.count == 0
    code, output = invoke_cli(["validate", str(result.recipe)])
    assert code == 0, output  # reviewers and cached reruns need no key: only sending does


def test_the_endpoint_is_down(server, generate_recipe, files, run_recipe):
    text = generate_recipe(SELF_INSTRUCT, max_attempts=2).replace(server.base_url,
                                                                  "http://127.0.0.1:9/v1")
    result = run_recipe(text, files=files, args=["-q"])
    assert_clear_error(result, "http://127.0.0.1:9/v1: cannot reach the server",
                       "after 2 attempts", "is it running")


def test_an_unknown_model_names_the_served_ones(server, generate_recipe, files, run_recipe):
    result = run_recipe(generate_recipe(SELF_INSTRUCT, model="gpt-9"), files=files, args=["-q"])
    assert_clear_error(result, "HTTP 404", "model 'gpt-9' is not served there (models:"
                                           " test-model)")


@pytest.mark.parametrize("options, fragments", [
    ({"max_requests": 0}, ["stages[0].max_requests", "at least 1, found 0"]),
    ({"max_tokens": 0}, ["stages[0].max_tokens", "at least 1, found 0"]),
    ({"max_requests": 2, "malformed_attempts": 3}, ["stages[0].max_requests",
                                                    "malformed_attempts = 3"]),
    ({"base_url": "127.0.0.1:8000"}, ["stages[0].base_url", "http://"]),
    ({"api_key_env": "sk-proj-abc123"}, ["stages[0].api_key_env", "expected the NAME of the"
                                         " environment variable holding the key"]),
    ({"strategy": {"count": 3}}, ["stages[0].strategy.use", "self-instruct"]),
    ({"strategy": {"use": "self-instruc"}}, ["stages[0].strategy.use", "did you mean"]),
    ({"strategy": {"use": "self-instruct", "count": 0}}, ["stages[0].strategy.count"]),
    ({"strategy": {"use": "self-instruct", "cuont": 3}}, ["strategy.cuont", "did you mean"]),
    ({"strategy": {"use": "template", "template": "{question}"}}, ["strategy.template",
                                                                   "{question}"]),
    ({"strategy": {"use": "augment", "label_pattern": "x"}}, ["strategy.label_pattern"]),
])
def test_option_mistakes_are_one_line_naming_the_key(server, generate_recipe, files, run_recipe,
                                                     options, fragments):
    options = {"strategy": SELF_INSTRUCT, **options}
    result = run_recipe(generate_recipe(options.pop("strategy"), **options), files=files,
                        args=["-q"])
    assert_clear_error(result, *fragments)
    assert "sk-proj" not in result.output  # a key pasted into api_key_env is never echoed
    assert server.count == 0


def test_the_hosted_api_example_takes_its_key_from_the_environment(repo, tmp_path,
                                                                  monkeypatch):
    docs = (repo / "docs" / "stages" / "generate.md").read_text()
    [example] = [block for block in re.findall(r"```toml\n(.*?)```", docs, re.DOTALL)
                 if "api.openai.com" in block]
    for line in ('base_url = "https://api.openai.com/v1"', 'model = "gpt-4o-mini"',
                 'api_key_env = "OPENAI_API_KEY"'):
        assert line in example and line in (repo / "README.md").read_text()
    (tmp_path / "qa.jsonl").write_text('{"prompt": "Hi?", "completion": "Hello."}\n')
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(source_table("qa", "qa.jsonl") + "\n" + example)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code, output = invoke_cli(["validate", str(recipe)])
    assert code == 0, output  # the key is read when a request must be sent, not before


def test_validate_checks_the_stage_without_importing_openai(repo):
    recipe = repo / "recipes" / "generate.toml"
    code = textwrap.dedent(f"""
        import sys
        from curate.cli import main
        sys.argv = ["curate", "validate", {str(recipe)!r}]
        try:
            main()
        finally:
            print("OPENAI=" + str("openai" in sys.modules), file=sys.stderr)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd="/")
    assert result.returncode == 0, result.stderr
    assert "stage 03-generate: generate" in result.stdout
    assert "OPENAI=False" in result.stderr


def test_no_seeds_to_learn_from(server, generate_recipe, files, run_recipe):
    strategy = {**SELF_INSTRUCT, "sources": ["nowhere"]}
    result = run_recipe(generate_recipe(strategy), files=files, args=["-q"])
    assert_clear_error(result, "strategy 'self-instruct'", "no records", "nowhere")
