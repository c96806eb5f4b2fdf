"""Registers the built-in evaluations: `loss`, `task-metrics`, `forgetting` and `judge`."""

from __future__ import annotations

from curate import hookimpl


@hookimpl
def register_evals(register):
    from curate.evals.forgetting import ForgettingEval
    from curate.evals.judge import JudgeEval
    from curate.evals.loss import LossEval
    from curate.evals.task import TaskMetricsEval

    for evaluation in (LossEval, TaskMetricsEval, ForgettingEval, JudgeEval):
        register(evaluation)
