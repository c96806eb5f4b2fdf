"""The built-in strategies' requests and parsing, on records in memory: which records each
strategy asks about, how seeds are drawn, and what an answer becomes."""

import random

import pytest

from curate.generation import GenerationError
from curate.options import OptionError, parse_options
from curate.plugins.generate.answer import AnswerOptions, AnswerPrompts
from curate.plugins.generate.augment import AugmentOptions, AugmentPrompts
from curate.plugins.generate.self_instruct import SeedPool, SelfInstruct, SelfInstructOptions
from curate.plugins.generate.template import TemplateOptions, TemplatePrompts
from curate.records import Record


def record(prompt, response, source="qa", system=None):
    messages = [{"role": "system", "content": system}] if system else []
    return Record([*messages, {"role": "user", "content": prompt},
                   {"role": "assistant", "content": response}], source)


def strategy(cls, options_class, **options):
    return cls(parse_options(options_class, options, "recipe.toml", "strategy"), "gen")


RECORDS = ([record(f"qa question {i}", f"qa answer {i}") for i in range(6)]
           + [record(f"chat question {i}", f"chat answer {i}", "chats") for i in range(2)])


def test_self_instruct_splits_the_count_into_requests():
    maker = strategy(SelfInstruct, SelfInstructOptions, count=5, pairs_per_request=2,
                     seeds_per_request=3)
    requests = list(maker.requests(RECORDS, random.Random(0)))
    assert [r.context["asked"] for r in requests] == [2, 2, 1]
    assert [r.schema["properties"]["pairs"]["maxItems"] for r in requests] == [2, 2, 1]
    assert all(len(r.seeds) == 3 for r in requests)
    assert len({r.messages[1]["content"] for r in requests}) == 3


def test_self_instruct_parse_keeps_at_most_what_was_asked():
    maker = strategy(SelfInstruct, SelfInstructOptions, count=1)
    [request] = maker.requests(RECORDS, random.Random(0))
    answer = {"pairs": [{"prompt": " P ", "response": " R "}, {"prompt": "x", "response": "y"}]}
    [draft] = maker.parse(answer, request)
    assert draft.messages == [{"role": "user", "content": "P"},
                              {"role": "assistant", "content": "R"}] and draft.source == "gen"


def test_seeds_are_not_reused_before_every_seed_was_shown():
    pool = SeedPool(RECORDS[:6], random.Random(1), balance=True, reuse=False)
    first, second = pool.take(3), pool.take(3)
    assert len({r.id for r in first + second}) == 6
    assert len({r.id for r in pool.take(3)}) == 3  # a new pass starts


def test_balanced_seeds_alternate_between_sources():
    pool = SeedPool(RECORDS, random.Random(1), balance=True, reuse=False)
    sources = [r.source for r in pool.take(4)]
    assert sources.count("chats") == 2 and sources.count("qa") == 2


def test_unbalanced_seeds_follow_the_data():
    pool = SeedPool(RECORDS, random.Random(1), balance=False, reuse=False)
    taken = [r.source for _ in range(4) for r in pool.take(2)]
    assert taken.count("chats") == 2  # each record once in the first pass of 8


def test_seed_sampling_is_deterministic_for_a_seed():
    def seeds(seed):
        maker = strategy(SelfInstruct, SelfInstructOptions, count=4)
        return [r.seeds for r in maker.requests(RECORDS, random.Random(seed))]

    assert seeds(3) == seeds(3) and seeds(3) != seeds(4)


def test_self_instruct_needs_seeds():
    maker = strategy(SelfInstruct, SelfInstructOptions, sources=["elsewhere"])
    with pytest.raises(GenerationError, match="no records with a prompt and a response in"
                                              " sources elsewhere"):
        list(maker.requests(RECORDS, random.Random(0)))


def test_temperatures_cycle_and_are_checked():
    maker = strategy(SelfInstruct, SelfInstructOptions, count=3, temperatures=[0.2, 1.0])
    assert [r.temperature for r in maker.requests(RECORDS, random.Random(0))] == [0.2, 1.0, 0.2]
    with pytest.raises(OptionError, match="between 0 and 2"):
        SelfInstruct.check_options(SelfInstructOptions(temperatures=[3.0]))


def test_answer_asks_only_for_missing_responses_and_keeps_the_system_prompt():
    blank = record("Why?", "  ", system="Be brief.")
    maker = strategy(AnswerPrompts, AnswerOptions)
    [request] = maker.requests([*RECORDS, blank], random.Random(0))
    assert request.replaces == blank.id and request.seeds == (blank.id,)
    assert request.messages[1:] == [{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "Why?"}]
    [draft] = maker.parse({"response": "Because."}, request)
    assert draft.messages[-1] == {"role": "assistant", "content": "Because."}
    assert draft.messages[0]["content"] == "Be brief." and draft.source == "qa"


def test_answer_limit():
    blanks = [record(f"Why {i}?", "") for i in range(4)]
    maker = strategy(AnswerPrompts, AnswerOptions, limit=2)
    assert [r.seeds[0] for r in maker.requests(blanks, random.Random(0))] == [
        blanks[0].id, blanks[1].id]


def test_augment_fills_small_groups_up_to_the_share():
    maker = strategy(AugmentPrompts, AugmentOptions, min_share=0.5)
    requests = list(maker.requests(RECORDS, random.Random(0)))
    assert {r.context["group"] for r in requests} == {"chats"}
    assert sum(r.context["asked"] for r in requests) == 2  # 2 of 8; half is 4


def test_augment_by_label_with_a_pattern():
    labelled = ([record(f"review {i}", f"positive: nice {i}") for i in range(5)]
                + [record("review x", "negative: broke")])
    maker = strategy(AugmentPrompts, AugmentOptions, by="label", min_share=0.5,
                     label_pattern="^(positive|negative)")
    [request] = maker.requests(labelled, random.Random(0))
    assert request.context["group"] == "negative" and request.context["asked"] == 2
    drafts = maker.parse({"paraphrases": ["It broke, review x", "review x again"]}, request)
    assert [d.messages[0]["content"] for d in drafts] == ["It broke, review x", "review x again"]
    assert all(d.messages[1]["content"] == "negative: broke" for d in drafts)


def test_augment_respects_max_records():
    maker = strategy(AugmentPrompts, AugmentOptions, min_share=1.0, max_records=3)
    assert sum(r.context["asked"] for r in maker.requests(RECORDS, random.Random(0))) == 3


@pytest.mark.parametrize("options, message", [
    ({"label_pattern": "^(a)"}, "needs by"),
    ({"by": "label", "label_pattern": "("}, "not a valid regex"),
    ({"by": "label", "label_pattern": "positive"}, "needs a group"),
])
def test_augment_option_mistakes(options, message):
    with pytest.raises(OptionError, match=message):
        AugmentPrompts.check_options(AugmentOptions(**options))


def test_template_fills_in_the_fields():
    maker = strategy(TemplatePrompts, TemplateOptions, template="{source}: {prompt} => {response}"
                     " {{json}}", system="Rewrite.", sources=["chats"])
    requests = list(maker.requests(RECORDS, random.Random(0)))
    assert [r.messages for r in requests][0] == [
        {"role": "system", "content": "Rewrite."},
        {"role": "user", "content": "chats: chat question 0 => chat answer 0 {json}"}]
    [draft] = maker.parse({"prompt": "New?", "response": "Yes."}, requests[0])
    assert draft.messages[-2:] == [{"role": "user", "content": "New?"},
                                   {"role": "assistant", "content": "Yes."}]


def test_template_limit_is_a_seeded_sample_in_input_order():
    maker = strategy(TemplatePrompts, TemplateOptions, template="{prompt}", limit=3,
                     output="response")
    picked = [r.seeds[0] for r in maker.requests(RECORDS, random.Random(5))]
    order = [r.id for r in RECORDS]
    assert len(picked) == 3 and picked == sorted(picked, key=order.index)
    [draft] = maker.parse({"response": "New answer."}, next(maker.requests(RECORDS,
                                                                           random.Random(5))))
    assert draft.messages[-1]["content"] == "New answer." and len(draft.messages) == 2


@pytest.mark.parametrize("template, message", [
    ("{question}", "unknown field {question}"),
    ("{prompt", "literal braces"),
])
def test_template_option_mistakes(template, message):
    with pytest.raises(OptionError, match=message):
        TemplatePrompts.check_options(TemplateOptions(template=template))
