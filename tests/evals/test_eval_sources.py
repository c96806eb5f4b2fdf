"""`sources = [...]` of an evaluation naming no source of the held-out examples: the error says
which sources they do come from, not to hold out more data."""

import json
from pathlib import Path

import pytest

from curate.errors import CurateError
from curate.evals.judge import JudgeEval, JudgeOptions
from curate.evals.task import TaskMetricsEval, TaskMetricsOptions
from curate.training import TrainContext

from .conftest import memorisation_rows


def held_out(run_dir: Path, sources: list[str]) -> TrainContext:
    rows = [{"id": str(i), "source": source, **row}
            for i, (source, row) in enumerate(zip(sources, memorisation_rows(len(sources))))]
    run_dir.mkdir(parents=True, exist_ok=True)
    eval_file = run_dir / "eval.jsonl"
    eval_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return TrainContext(run_dir, run_dir, run_dir / "train.jsonl", eval_file, 0, print)


@pytest.mark.parametrize("evaluation", [
    lambda sources: (TaskMetricsEval(), TaskMetricsOptions(sources=sources)),
    lambda sources: (JudgeEval(), JudgeOptions(base_url="http://127.0.0.1:9/v1", model="m",
                                               sources=sources)),
], ids=["task-metrics", "judge"])
def test_a_source_without_held_out_examples_names_the_sources_there_are(tmp_path, evaluation):
    plugin, options = evaluation(["nosuch", "chat"])
    with pytest.raises(CurateError) as raised:
        plugin.evaluate(options, held_out(tmp_path, ["chats", "docs", "chats"]))
    assert str(raised.value) == (
        f"{tmp_path / 'eval.jsonl'}: no held-out example comes from sources nosuch, chat: did"
        f" you mean 'chats'? (the held-out examples come from chats, docs): fix the [[evals]]"
        f" sources, or hold out more examples with [split] eval_size")
