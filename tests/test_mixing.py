"""The rehearsal mix as measured at the split: ratio, gap and the warning's cause."""

from curate.mixing import achieved_mix, rehearsal_plan

PLAN = {"target_ratio": 0.15, "count": "examples", "task_train": 17, "wanted": 3,
        "pool_exhausted": False, "pool": {"rows": 500, "drawn": 3}}


def test_the_plan_comes_from_the_last_step_that_made_one():
    steps = [{"name": "read"}, {"name": "a", "stats": {"rehearsal": {"x": 1}}},
             {"name": "b", "stats": {"other": 2}}]
    assert rehearsal_plan(steps) == {"x": 1}
    assert rehearsal_plan(steps[:1]) is None


def test_on_target_within_half_a_point_gives_no_warning():
    mix = achieved_mix(PLAN, {"train_origins": {"human": 170, "rehearsal": 30}})
    assert mix == {"target": 0.15, "count": "examples", "gap_pp": 0.0,
                   "examples": {"general": 30, "train": 200, "ratio": 0.15}}
    assert "warning" not in achieved_mix(PLAN, {"train_origins": {"human": 994, "rehearsal": 181}})


def test_too_few_task_examples_is_named_as_the_cause():
    mix = achieved_mix(PLAN, {"train_origins": {"human": 17, "rehearsal": 3}})
    assert mix["gap_pp"] == 0.0 and "warning" not in mix
    coarse = achieved_mix(PLAN, {"train_origins": {"human": 17, "rehearsal": 4}})
    assert coarse["warning"] == (
        "rehearsal: general data is 19.05% of the training examples (4 of 21), +4.05 percentage"
        " points from the target 15.00%: 17 task training examples are too few for a closer"
        " ratio, or a step after the rehearsal stage changed the training set")


def test_tokens_are_measured_when_counted_in_tokens():
    plan = {**PLAN, "count": "tokens"}
    mix = achieved_mix(plan, {"train_origins": {"human": 10, "rehearsal": 1},
                              "train_tokens": {"human": 850, "rehearsal": 150}})
    assert mix["tokens"] == {"general": 150, "train": 1000, "ratio": 0.15}
    assert "warning" not in mix
