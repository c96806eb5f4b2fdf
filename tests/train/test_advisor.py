"""The advisor's rules, one by one, against the numbers practice gives."""

import pytest

from curate.train.advisor import TrainingFacts, advise
from curate.train.options import QLoRAOptions

GOOD = dict(learning_rate=2e-4, lora_r=8, lora_alpha=16, batch_size=4, gradient_accumulation=4)


def advice(facts=TrainingFacts(), **options):
    return advise(QLoRAOptions(**{**GOOD, **options}), facts)


def test_sound_options_draw_no_advice():
    assert advice(TrainingFacts(examples=500, rehearsal_examples=60, has_eval=True), epochs=3) == []


@pytest.mark.parametrize("rate,warned", [(5e-5, True), (1e-4, False), (3e-4, False), (5e-4, True)])
def test_learning_rate_outside_1e4_to_3e4(rate, warned):
    assert bool(advice(learning_rate=rate)) is warned


@pytest.mark.parametrize("task,rank,warned", [
    ("simple", 4, False), ("simple", 16, True), ("general", 8, False), ("general", 2, True),
    ("complex", 16, False), ("style", 32, False), ("near-full", 64, False), ("near-full", 8, True)])
def test_rank_against_the_task(task, rank, warned):
    warnings = advice(task=task, lora_r=rank, lora_alpha=rank * 2)
    assert bool(warnings) is warned, warnings


@pytest.mark.parametrize("examples,epochs,warned", [
    (500, 3, False), (500, 5, False), (500, 1, True), (5_000, 2, False), (5_000, 4, True),
    (50_000, 1, False), (50_000, 2, True)])
def test_epochs_against_the_dataset_size(examples, epochs, warned):
    facts = TrainingFacts(examples=examples, rehearsal_examples=50, has_eval=True)
    warnings = advice(facts, epochs=epochs)
    assert bool(warnings) is warned, warnings


def test_epochs_are_not_judged_when_max_steps_decides():
    assert advice(TrainingFacts(examples=50_000, rehearsal_examples=1), epochs=3,
                  max_steps=100) == []


def test_effective_batch_counts_devices():
    assert advice(TrainingFacts(devices=4), batch_size=4, gradient_accumulation=4) == [
        "effective batch 64 (batch_size 4 x gradient_accumulation 4 x 4 devices) is outside"
        " 16-32"]
    assert advice(TrainingFacts(devices=2), batch_size=4, gradient_accumulation=2) == []


def test_alpha_against_rank():
    assert advice(lora_alpha=4) and advice(lora_alpha=64)
    assert not advice(lora_alpha=8, lora_r=8) and not advice(lora_alpha=16, lora_r=8)


def test_small_dataset_without_rehearsal_data():
    small = advice(TrainingFacts(examples=400, rehearsal_examples=0, has_eval=True), epochs=4)
    assert len(small) == 1 and small[0].startswith("no rehearsal data among 400 examples")
    assert not advice(TrainingFacts(examples=40_000, rehearsal_examples=0), epochs=1)


def test_early_stopping_without_an_eval_split():
    assert advice(TrainingFacts(has_eval=False))[0].startswith("early_stopping_patience is 3")
    assert advice(TrainingFacts(has_eval=False), early_stopping_patience=0) == []
