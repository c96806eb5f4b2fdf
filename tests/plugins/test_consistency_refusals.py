"""The consistency stage's built-in refusal patterns: boilerplate refusals (the request declined,
nothing else offered) are rejected; helpful answers that open with an apology, decline something
other than the request, or go on to help are kept."""

import pytest

from curate.plugins.consistency_refusals import REFUSAL_MAX_WORDS, builtin_refusal
from curate.testing import messages_row as row
from support.consistency_runs import by_line, run

REFUSALS = [
    "I'm sorry, but I can't help with that.",
    "I'm sorry, but I can't assist with that request.",
    "I'm sorry, but I cannot fulfill this request.",
    "I'm sorry, but I cannot fulfill this request as it goes against OpenAI's use case policy.",
    "As an AI language model, I cannot provide medical advice.",
    "As an AI language model, I cannot determine the sentiment of a review without more context"
    " about the customer's expectations.",
    "As an AI, I don't have personal opinions or feelings, so I am unable to say whether this"
    " review is positive or negative.",
    "As an AI language model I can't.",
    "I'm sorry, but as an AI language model, I cannot generate that kind of content.",
    "I'm just an AI, I can't help with that.",
    "I cannot comply with that request.",
    "I cannot comply.",
    "Sorry, I can't help with that.",
    "I apologize, but I am unable to assist with this request as it violates my guidelines.",
    "I apologize, but I cannot assist with classifying this content. Is there anything else I"
    " can help you with?",
    "I'm sorry, but I can't help with that. If you have any other questions, feel free to ask!",
    "I must decline.",
    "I must respectfully decline this request.",
    "I won't do that.",
    "Unfortunately, I cannot assist with that.",
    "I'm afraid I can't do that.",
    "I can't provide that information.",
    "I'm sorry, but I cannot answer.",
    "I'm not able to help with this.",
    "That's not something I can help with.",
    "I cannot help you with that request.",
]

HELPFUL = [
    "I'm sorry, but I can't refund boots after 30 days. You can still exchange them for store"
    " credit within 60 days, and if they are defective our 2-year warranty covers a repair or"
    " replacement.",
    "I'm sorry, but I can't find order 88123 in our system. Could you check the number on your"
    " confirmation email, or send me the email address you used at checkout?",
    "I must decline to combine them on one order, sorry: the terms allow one discount per order."
    " Trail Points usually save more, so I'd use those.",
    "I'm sorry to hear that! Here's how to reset your router: hold the reset button for ten"
    " seconds.",
    "Sorry, I can't make the 3pm slot, but 4pm works.",
    "I'm sorry, but I can't help with that part of the form until you upload the receipt.",
    "I can't help with that directly, but our returns team can: call 555-0100.",
    "As an AI language model, I cannot browse the web, but Paris is the capital of France.",
    "I'm sorry, but I can't help with that. However, vinegar and water clean just as well.",
    "I cannot stress this enough: always wear a helmet.",
    "I won't do that again, promise.",
    "Unfortunately, I can't provide that today, but tomorrow works.",
    "The agent replied: I'm sorry, but I can't help with that.",
    "I'm sorry about the delay. Your package ships tomorrow.",
    "Unfortunately we can't ship fuel canisters because carriers treat them as hazardous"
    " materials.",
    "I can't help with that. Open the lid, remove the filter and rinse it under warm water. Let"
    " it dry fully and put it back before you run the machine again. If the light still blinks,"
    " hold the power button for ten seconds to reset the sensor, then try once more and call us"
    " if it keeps blinking.",
]


@pytest.mark.parametrize("text", REFUSALS)
def test_boilerplate_refusals_are_found(text):
    found = builtin_refusal(text)
    assert found is not None and text.startswith(found.match)
    assert found.words == len(text.split()) <= REFUSAL_MAX_WORDS


@pytest.mark.parametrize("text", HELPFUL)
def test_helpful_answers_are_not_refusals(text):
    assert builtin_refusal(text) is None


def test_the_stage_keeps_helpful_apologies_and_rejects_refusals(run_recipe):
    rows = [row(f"q{i}", text) for i, text in enumerate(HELPFUL[:3] + REFUSALS[:1])]
    found = by_line(run(run_recipe, "max_zscore = 0", *rows))
    assert [outcome[0] for outcome in found.values()] == ["kept", "kept", "kept", "refusal"]
    assert found["a.jsonl:4"][2]["words"] == 8
