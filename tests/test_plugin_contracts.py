"""What plugins hand back is checked where it reaches the host: every input record of a stage
comes out exactly once (by id), and a source, filter, stage or evaluation that hands back the
wrong thing stops the run with one line naming it and its plugin. An error a plugin raises
keeps its traceback, with a note naming the plugin."""

import json
import sys
import types
from dataclasses import dataclass

import pytest

from curate import hookimpl
from curate.console import SilentConsole
from curate.errors import CurateError
from curate.finishing import cached_call, checked_result, run_evaluation, run_trainer
from curate.options import option
from curate.recipe import PluginSpec
from curate.records import Added, Record, Rejection
from curate.sources import Row, Source
from curate.stages import Filter, Reject, Stage
from curate.testing import alpaca_row, assert_clear_error, assert_complete, invoke_cli, jsonl
from curate.training import Evaluation, TrainContext, Trainer

DATA = jsonl(*(alpaca_row(number) for number in range(6)))


def assert_names_the_plugin(error: Exception, label: str) -> None:
    if sys.version_info >= (3, 11):  # exception notes are new in 3.11
        assert error.__notes__ == [f"raised in {label}"]


@dataclass
class ModeOptions:
    mode: str = option("", help="how the plugin misbehaves")


class Misbehaving(Stage):
    """Yields its input as `mode` says: a record twice, a record lost, a new one, ..."""

    name = "misbehaving"
    Options = ModeOptions

    def process(self, records):
        records = list(records)
        if self.options.mode == "reversed":
            yield from reversed(records)
            return
        first, second, rest = records[0], records[1], records[2:]
        yield first
        yield from self.second(first, second)
        yield from rest

    def second(self, first, second) -> list:
        """What comes out in place of the second record."""
        made_up = Record([{"role": "user", "content": "made up"},
                          {"role": "assistant", "content": "a made-up answer"}], "x")
        better = second.revised([*second.messages[:-1],
                                 {"role": "assistant", "content": "A better answer."}])
        return {"swap": [first], "duplicate": [second, second], "lose": [], "new": [made_up],
                "none": [None], "detail-none": [Rejection(second, "bad", None)],
                "revised": [better], "revised-and-kept": [second, better],
                "added": [second, Added(made_up)],
                "added-twice": [second, Added(Added(made_up))],
                "bad-role": [second.revised([*second.messages[:-1],
                                             {"role": "bot", "content": "hi"}])],
                "extra-key": [second, Added(Record([{"role": "user", "content": "q",
                                                     "weight": 0}], "x"))],
                }[self.options.mode]


@dataclass
class VerdictOptions:
    verdict: str = option("none", help="what check() returns")


VERDICTS = {"none": None, "false": False, "true": True, "text": "too-bad",
            "reject-none": Reject(None, None), "reject": Reject("bad", "a test verdict")}


class Verdicts(Filter):
    name = "verdicts"
    Options = VerdictOptions

    def check(self, record):
        return VERDICTS[self.options.verdict]


class ParallelVerdicts(Verdicts):
    name = "parallel-verdicts"
    parallel = True
    batch_size = 2


class Redacting(Filter):
    """Edits in place what it should yield as a revision."""
    name = "redacting"
    parallel = True
    batch_size = 2

    def check(self, record):
        record.messages[-1]["content"] = record.messages[-1]["content"].replace("a", "*")
        record.meta["redacted"] = True


class ShortBatches(Filter):
    name = "short-batches"

    def check_batch(self, records):
        return [None] * (len(records) - 1)


class Raising(Stage):
    name = "raising"

    def process(self, records):
        for record in records:
            raise KeyError("boom")
            yield record


def stage_plugin():
    module = types.ModuleType("contracts")
    module.register_stages = hookimpl(lambda register: [
        register(stage) for stage in (Misbehaving, Verdicts, ParallelVerdicts, ShortBatches,
                                      Raising, Redacting)])
    return module


def stage_recipe(use: str, **options) -> str:
    keys = "".join(f'{key} = "{value}"\n' for key, value in options.items())
    return f"""
[run]
workers = 2

[[sources]]
name = "qa"
use = "jsonl"
path = "qa.jsonl"

[[stages]]
name = "judge"
use = "{use}"
{keys}"""


@pytest.fixture
def run_stage(curate_plugin, run_recipe):
    curate_plugin(stage_plugin(), name="acme")

    def run(use: str, data: str = DATA, **options):
        return run_recipe(stage_recipe(use, **options), files={"qa.jsonl": data}, args=["-q"])

    return run


# Every input record comes out exactly once, by id


@pytest.mark.parametrize("mode, message", [
    ("swap", "was yielded twice"),
    ("duplicate", "was yielded twice"),
    ("lose", "was never yielded"),
    ("new", "is not one of its input records: yield a record the stage adds as"
            " curate.records.Added(record)"),
    ("revised-and-kept", "which was already yielded: a revision replaces its record"),
])
def test_a_stage_that_loses_repeats_or_invents_a_record_fails_in_one_line(run_stage, mode,
                                                                          message):
    assert_clear_error(run_stage("misbehaving", mode=mode),
                       "error: stage 'judge' (plugin acme): record ", message)


@pytest.mark.parametrize("mode, message", [
    ("bad-role", "whose message 1 has role 'bot'; expected one of system, user, assistant"),
    ("extra-key", "an Added holding record cc9128cdc2caed28 whose message 0 is not {\"role\":"
                  " ..., \"content\": ...} (found dict with keys content, role, weight)"),
])
def test_records_a_stage_makes_are_checked_like_those_read(run_stage, mode, message):
    assert_clear_error(run_stage("misbehaving", mode=mode),
                       "error: stage 'judge' (plugin acme): process() yielded ", message)


def test_a_record_yielded_twice_is_named_by_its_id(run_stage):
    result = run_stage("misbehaving", mode="swap")
    first = Record([{"role": "user", "content": "Question 0?"},
                    {"role": "assistant", "content": "A long enough answer 0."}], "qa")
    assert f"record {first.id} was yielded twice" in result.output


def test_revised_and_added_records_are_accounted_for(run_stage):
    revised = assert_complete(run_stage("misbehaving", mode="revised"))["steps"][1]
    assert (revised["in"], revised["kept"], revised["added"]) == (6, 6, 0)
    added = assert_complete(run_stage("misbehaving", mode="added"))["steps"][1]
    assert (added["in"], added["kept"], added["added"]) == (6, 7, 1)


@pytest.mark.parametrize("mode", ["revised", "reversed"])
def test_copies_of_one_record_each_come_out_in_any_order(run_stage, mode):
    copies = DATA + jsonl(alpaca_row(3), alpaca_row(3))
    manifest = assert_complete(run_stage("misbehaving", data=copies, mode=mode))
    assert manifest["steps"][1]["kept"] == 8


def test_a_record_revised_by_an_earlier_step_is_kept_in_any_order():
    """Its meta.revised_from names a record of an earlier step, which may be waiting here too
    (an unedited copy of the original): keeping both, in any order, is no revision."""
    from curate.step_execution import InputLedger

    def messages(text):
        return [{"role": "user", "content": text}, {"role": "assistant", "content": "a"}]

    original = Record(messages("original"), "s")
    edited = Record(messages("original"), "s").revised(messages("edited by a reviewer"))
    records = [original, edited]
    ledger = InputLedger(iter(records), "stage 'sorter'", lambda: (r.id for r in records))

    class LaterFirst:
        def process(self, inputs):
            first, second = list(inputs)
            yield from (second, first)

    assert list(ledger.outcomes(LaterFirst())) == [edited, original]
    ledger.check_complete(2)


@pytest.mark.parametrize("mode, message", [
    ("none", "process() yielded NoneType: a stage yields each input record exactly once"),
    ("detail-none", "process() yielded a Rejection whose detail is NoneType"),
    ("added-twice", "process() yielded an Added holding Added"),
])
def test_a_stage_that_yields_something_else_fails_in_one_line(run_stage, mode, message):
    assert_clear_error(run_stage("misbehaving", mode=mode), "stage 'judge' (plugin acme): ",
                       message)


# Filters


@pytest.mark.parametrize("use", ["verdicts", "parallel-verdicts"])
@pytest.mark.parametrize("verdict, returned", [
    ("false", "check() returned bool; return None to keep or Reject(reason, detail)"),
    ("true", "check() returned bool; return None to keep or Reject(reason, detail)"),
    ("text", "check() returned str; return None to keep or Reject(reason, detail)"),
    ("reject-none", "check() returned a Reject whose reason is None: give a short slug"),
])
def test_a_filter_verdict_that_is_not_none_or_a_reject_fails_in_one_line(run_stage, use,
                                                                         verdict, returned):
    assert_clear_error(run_stage(use, verdict=verdict),
                       f"error: stage 'judge' (plugin acme): {returned}")


def test_a_check_batch_with_a_verdict_missing_fails_in_one_line(run_stage):
    assert_clear_error(run_stage("short-batches"), "stage 'judge' (plugin acme): check_batch()"
                                                   " returned 5 verdicts for a batch of 6")


def test_a_filter_that_edits_messages_in_place_fails_in_one_line(run_stage):
    # Kept under its old id, the edited text would inherit the unedited one's explanations
    # and review decisions.
    assert_clear_error(run_stage("redacting"), "stage 'judge' (plugin acme): check() changed"
                       " the messages of record ", "(qa.jsonl:1): a filter only judges",
                       "yields record.revised(messages)")


def test_filters_that_keep_the_contract_still_run(run_stage):
    manifest = assert_complete(run_stage("parallel-verdicts", verdict="reject"))
    assert manifest["steps"][1]["reasons"] == {"bad": 6}


def test_an_error_a_stage_raises_keeps_its_traceback_and_names_the_plugin(run_stage):
    with pytest.raises(KeyError) as raised:
        run_stage("raising")
    assert_names_the_plugin(raised.value, "stage 'judge' (plugin acme)")


# Sources


class Made(Source):
    """Rows made up in code (no file): yields what `mode` says."""

    name = "made"
    Options = ModeOptions

    def fingerprint(self, options, context):
        return options.mode

    def rows(self, options, context):
        for number in range(3):
            if options.mode == "raise" and number == 2:
                raise ValueError("connection reset by peer")
            row = {"prompt": f"Question {number}?", "completion": "A long enough answer."}
            yield {"dict": row, "text": Row("Question?", f"made:{number}"),
                   "no-location": Row(row, None)}.get(options.mode, Row(row, f"made:{number}"))


class Pathless(Source):
    """Reads no file and cannot say what identifies its data."""

    name = "pathless"

    def rows(self, options, context):
        yield Row({"prompt": "Question?", "completion": "A long enough answer."}, "pathless:0")


def source_plugin():
    module = types.ModuleType("sources")
    module.register_sources = hookimpl(lambda register: [register(Made), register(Pathless)])
    return module


def source_recipe(use: str, mode: str = "") -> str:
    return f'[[sources]]\nname = "made"\nuse = "{use}"\n' + (f'mode = "{mode}"\n' if mode else "")


@pytest.mark.parametrize("mode, yielded", [
    ("dict", "rows() yielded dict: yield Row(data, location) for each row"),
    ("text", "rows() yielded a Row whose data is str"),
    ("no-location", "rows() yielded a Row whose location is NoneType"),
])
def test_a_source_that_yields_something_else_than_rows_fails_in_one_line(
        curate_plugin, run_recipe, mode, yielded):
    curate_plugin(source_plugin(), name="acme")
    assert_clear_error(run_recipe(source_recipe("made", mode), args=["-q"]),
                       f"error: source 'made' (plugin acme): {yielded}")


def test_an_error_a_source_raises_keeps_its_traceback_and_names_the_plugin(curate_plugin,
                                                                            run_recipe):
    curate_plugin(source_plugin(), name="acme")
    assert_complete(run_recipe(source_recipe("made")))
    with pytest.raises(ValueError) as raised:
        run_recipe(source_recipe("made", "raise"))
    assert_names_the_plugin(raised.value, "source 'made' (plugin acme)")


def test_a_source_without_path_or_fingerprint_is_refused_at_validate(curate_plugin, tmp_path):
    curate_plugin(source_plugin(), name="acme")
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(source_recipe("pathless"))
    code, output = invoke_cli(["validate", str(recipe)])
    assert code == 2, output
    assert output.startswith(f"error: {recipe}: sources[0]: source plugin 'pathless' (plugin"
                             f" acme) has no `path` to fingerprint and does not implement"
                             f" fingerprint()"), output
    assert output.count("\n") == 1


# Trainers and evaluations


class Quick(Trainer):
    name = "quick"
    Options = ModeOptions

    def train(self, options, context):
        return {"list": [1, 2], "none": None}.get(options.mode, {"steps": 1})


class Returns(Evaluation):
    name = "returns"
    Options = ModeOptions

    def evaluate(self, options, context):
        if options.mode == "raise":
            raise RuntimeError("judge API 500")
        return {"list": [1, 2], "none": None, "set": {"labels": {"a", "b"}},
                "tuple-keys": {(1, 2): 3}}.get(options.mode, {"accuracy": 0.5})


def spec(plugin, mode: str = "") -> PluginSpec:
    return PluginSpec("judge", plugin.name, plugin, ModeOptions(mode), "evals[0]",
                      ["acme", "1.0", plugin.__qualname__, "1"])


@pytest.fixture
def context(tmp_path) -> TrainContext:
    return TrainContext(tmp_path, tmp_path, tmp_path / "train.jsonl", tmp_path / "eval.jsonl", 0)


@pytest.mark.parametrize("mode, returned", [
    ("list", "evaluate() returned list; return a dict of JSON values"),
    ("none", "evaluate() returned NoneType; return a dict of JSON values"),
    ("set", "evaluate() returned a dict JSON cannot hold (Object of type set is not JSON"
            " serializable)"),
    ("tuple-keys", "evaluate() returned a dict JSON cannot hold (keys must be"),
])
def test_an_evaluation_that_returns_no_json_object_fails_in_one_line(context, mode, returned):
    with pytest.raises(CurateError) as raised:
        run_evaluation(spec(Returns, mode), context)
    assert str(raised.value).startswith(f"evaluation 'judge' (plugin acme): {returned}")
    assert run_evaluation(spec(Returns), context) == {"accuracy": 0.5}


def test_a_trainer_that_returns_no_json_object_fails_in_one_line(context):
    with pytest.raises(CurateError, match=r"^trainer 'judge' \(plugin acme\): train\(\)"
                                          r" returned list; return a dict"):
        run_trainer(spec(Quick, "list"), context)
    assert run_trainer(spec(Quick, "none"), context) == {}


def test_an_error_an_evaluation_raises_keeps_its_traceback_and_names_the_plugin(context):
    with pytest.raises(RuntimeError) as raised:
        run_evaluation(spec(Returns, "raise"), context)
    assert_names_the_plugin(raised.value, "evaluation 'judge' (plugin acme)")


def test_a_bad_result_is_not_cached_and_a_cached_one_that_is_no_object_is_redone(tmp_path):
    path = tmp_path / "judge.json"
    with pytest.raises(CurateError):
        cached_call(path, "print", False, SilentConsole(), "eval judge",
                    lambda: checked_result([1, 2], "evaluation 'judge'", "evaluate()"))
    assert not path.exists()
    path.write_text(json.dumps({"fingerprint": "print", "result": [1, 2]}))  # an older curate's
    result = cached_call(path, "print", False, SilentConsole(), "eval judge", lambda: {"a": 1})
    assert result == {"a": 1, "cached": False}
