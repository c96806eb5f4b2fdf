"""The `judge` evaluation through `curate eval`, against the scripted OpenAI-compatible server
on 127.0.0.1: every pair judged in both orders, position bias cancelled, malformed judgements
counted, answers cached."""

import json
import re
import shutil

import pytest

from curate.testing import invoke_cli

from support import openai_server

ANSWERS = re.compile(r"\[Answer A\]\n(.*)\n\n\[Answer B\]\n(.*)\n\nReply", re.DOTALL)


@pytest.fixture
def server():
    with openai_server.OpenAIServer(models=["first-fan", "fair"]) as running:
        yield running


@pytest.fixture
def judged(evaluated_run, tmp_path):
    """A copy of the evaluated run, and a function that runs `curate eval` on it with a judge
    of the given model added to the recipe; returns (exit code, output, results)."""
    _, run_dir, recipe = evaluated_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)

    def run(server, model, *args):
        with_judge = recipe.parent / f"judged-{model}.toml"
        with_judge.write_text(recipe.read_text() + (
            f'\n[[evals]]\nuse = "judge"\nbase_url = "{server.base_url}"\nmodel = "{model}"\n'
            f'api_key_env = ""\nmax_new_tokens = 12\n'))
        code, output = invoke_cli(["eval", str(with_judge), "--run-dir", str(copy), *args])
        results = json.loads((copy / "eval" / "results.json").read_text())
        return code, output, results

    return run, copy


def answer_pairs(server) -> list[tuple[str, str]]:
    return [ANSWERS.search(openai_server.last_user_text(body)).groups()
            for body in server.requests]


def test_a_judge_that_always_prefers_answer_a_declares_no_winner(judged, server):
    run, run_dir = judged
    code, output, results = run(server, "first-fan")
    assert code == 0, output
    judge = results["judge"]
    asked = judge["pairs"] - judge["identical"]
    assert asked >= 1 and server.count == 2 * asked
    pairs = answer_pairs(server)
    assert all((b, a) in pairs for a, b in pairs)  # each pair was sent in both orders
    assert judge["inconsistent"] == asked and judge["tuned"] == judge["base"] == 0
    assert judge["win_rate"] == 0.0 and judge["loss_rate"] == 0.0
    assert judge["position_consistency"] == 0.0
    for name in ("loss", "task-metrics", "forgetting"):
        assert f"eval {name:<19} cached" in output  # only the new evaluation ran
    html = (run_dir / "report.html").read_text()
    assert f"judge: tuned won 0, lost 0, tied {judge['tie']} and {asked} inconsistent" in html
    sample = json.loads((run_dir / "eval" / "samples.jsonl").read_text().splitlines()[0])
    assert set(sample["verdicts"]) == {"task-metrics", "judge"}


def test_judgements_are_cached_even_when_the_evaluation_is_forced(judged, server):
    run, _ = judged
    run(server, "first-fan")
    sent = server.count
    code, output, _ = run(server, "first-fan", "--force")
    assert code == 0, output
    assert server.count == sent
    assert "eval judge               ran" in output


def test_a_consistent_judge_decides_and_a_malformed_judgement_is_only_counted(judged, server):
    run, run_dir = judged
    samples = [json.loads(line) for line in
               (run_dir / "eval" / "samples.jsonl").read_text().splitlines()]
    tuned_answers = {sample["tuned"] for sample in samples}
    differing = [sample for sample in samples if sample["base"] != sample["tuned"]]

    def prefer_the_tuned_answer(body):
        answer_a, _ = ANSWERS.search(openai_server.last_user_text(body)).groups()
        return json.dumps({"reason": "it is right", "winner": "A" if answer_a in tuned_answers
                           else "B"})

    server.answer = prefer_the_tuned_answer
    server.rules = {differing[0]["prompt"]: "malformed"}
    code, output, results = run(server, "fair")
    assert code == 0, output
    judge = results["judge"]
    assert judge["malformed"] == 1
    assert judge["tuned"] == len(differing) - 1 and judge["base"] == 0
    assert judge["inconsistent"] == 0 and judge["position_consistency"] == 1.0
    assert judge["win_rate"] == pytest.approx(judge["tuned"] / (judge["pairs"] - 1))
    assert "1 malformed judgements" in output
    assert judge["incomplete"] == "1 malformed judgements, asked again by the next run"
    sent, server.rules = server.count, {}
    code, output, results = run(server, "fair")  # not forced: an incomplete result is redone
    assert code == 0 and "eval judge               ran" in output, output
    assert server.count - sent in (1, 2)  # only the malformed pair's orders are asked again
    assert results["judge"]["tuned"] == len(differing) and "incomplete" not in results["judge"]
    code, output, _ = run(server, "fair")
    assert "eval judge               cached" in output, output


@pytest.mark.parametrize("change, key", [({"model": " "}, "model"),
                                         ({"base_url": "127.0.0.1:8000"}, "base_url"),
                                         ({"api_key_env": "CURATE_TEST_UNSET_KEY"}, "api_key_env")])
def test_the_judge_checks_its_endpoint_like_the_generate_stage(change, key):
    from curate.evals.judge import JudgeEval, JudgeOptions
    from curate.options import OptionError

    options = JudgeOptions(**{"base_url": "http://127.0.0.1:8000/v1", "model": "judge",
                              "api_key_env": "", **change})
    with pytest.raises(OptionError) as raised:
        JudgeEval.check_options(options)
    assert raised.value.key == key


def test_a_malformed_judgement_is_not_cached_so_the_next_run_asks_again(judged, server):
    run, _ = judged
    server.answer = lambda body: "I think A is better"
    code, output, results = run(server, "fair")
    asked = results["judge"]["pairs"]
    assert code == 0 and results["judge"]["malformed"] == asked, output
    assert results["judge"]["win_rate"] is None and results["judge"]["identical"] == 0
    assert f"warning: judge: all {asked} pairs got a malformed judgement" in output
    sent = server.count
    server.answer = None  # now valid JSON, always "A": every pair inconsistent
    code, output, results = run(server, "fair")
    assert code == 0, output
    assert server.count == sent + 2 * asked
    assert results["judge"]["malformed"] == 0 and results["judge"]["inconsistent"] == asked


def test_a_cached_malformed_judgement_from_an_older_run_is_dropped(tmp_path):
    from curate.evals.judge import JudgementCache
    from curate.plugins.generate.cache import Answer, ResponseCache

    path = tmp_path / "judge.sqlite"
    older = ResponseCache(path)
    older.put("k", "{}", Answer("I think A is better", "stop", 1, 1, "judge", "t"))
    older.close()
    cache = JudgementCache(path)
    assert cache.get("k") is None and len(cache) == 0
    valid = Answer('{"reason": "r", "winner": "tie"}', "stop", 1, 1, "judge", "t")
    cache.put("k", "{}", valid)
    assert cache.get("k") == valid
    cache.close()


def test_when_every_judgement_is_malformed_the_rates_are_null_and_the_report_says_so(
        tmp_path):
    from curate.evals.judge import tally
    from curate.plugins.report_eval import gather_evaluation, html_section, markdown_section

    result = tally([{"outcome": "malformed", "orders": [None, "base"]}] * 3)
    assert result["win_rate"] is result["loss_rate"] is result["tie_rate"] is None
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "results.json").write_text(json.dumps({"judge": result}))
    evaluation = gather_evaluation(tmp_path)
    assert evaluation.comparisons == []
    assert "3 malformed judgements; no pair judged, so no win rate" in html_section(evaluation)[2]
    assert "no pair judged" in markdown_section(evaluation)
