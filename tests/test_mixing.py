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
        " ratio, or a step after the rehearsal stage changed the training set (the chat-template"
        " step drops records it cannot fit)")


def test_tokens_are_measured_when_counted_in_tokens():
    plan = {**PLAN, "count": "tokens"}
    mix = achieved_mix(plan, {"train_origins": {"human": 10, "rehearsal": 1},
                              "train_tokens": {"human": 850, "rehearsal": 150}})
    assert mix["tokens"] == {"general": 150, "train": 1000, "ratio": 0.15}
    assert "warning" not in mix


TOKENS_PLAN = {"target_ratio": 0.15, "count": "tokens", "task_train_tokens": 24_630,
               "wanted": 4_347, "pool_exhausted": False,
               "pool": {"rows": 500, "drawn": 10, "drawn_tokens": 4_000, "held_out": 0}}
TOKENS_SPLIT = {"train_origins": {"human": 90, "rehearsal": 10},
                "train_tokens": {"human": 24_630, "rehearsal": 3_000}}


def test_in_tokens_the_task_tokens_are_named_not_examples():
    warning = achieved_mix(TOKENS_PLAN, TOKENS_SPLIT)["warning"]
    assert warning.endswith(": 24,630 task training tokens are too few for a closer ratio, or a"
                            " step after the rehearsal stage changed the training set (the"
                            " chat-template step drops records it cannot fit)")


def test_general_records_dropped_after_the_stage_are_named_as_the_cause():
    split = {**TOKENS_SPLIT, "train_origins": {"human": 90, "rehearsal": 9}}
    warning = achieved_mix(TOKENS_PLAN, split)["warning"]
    assert ": 1 of the 10 general records drawn did not reach train: a step after the rehearsal" \
           " stage dropped them" in warning


def test_a_record_that_would_overshoot_is_its_own_cause_not_an_empty_pool():
    plan = {**TOKENS_PLAN, "overshoot_tokens": 957}
    warning = achieved_mix(plan, TOKENS_SPLIT)["warning"]
    assert ": the draw stopped at 4,000 of the 4,347 tokens wanted, as the next general record" \
           " (957 tokens) would overshoot the target further" in warning
    exhausted = achieved_mix({**TOKENS_PLAN, "pool_exhausted": True}, TOKENS_SPLIT)["warning"]
    assert ": the pool ran out after 4,000 of the 4,347 tokens wanted (500 rows read" in exhausted


def test_a_general_eval_slice_shrunk_after_the_stage_warns():
    plan = {**PLAN, "pool": {"rows": 500, "drawn": 3, "held_out": 10}}
    mix = achieved_mix(plan, {"train_origins": {"human": 17, "rehearsal": 3}, "general_eval": 9})
    assert mix["general_eval"] == {"held_out": 10, "written": 9}
    assert mix["warning"] == (
        "rehearsal: general_eval.jsonl has 9 of the 10 general records held out: a step after the"
        " rehearsal stage dropped 1 (the chat-template step drops records it cannot fit; `curate"
        " why` shows why)")
