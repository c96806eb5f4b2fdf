"""The built-in chat templates: each renders byte-identically to its family's original on a
fixed set of conversations (the generation markers only add the mask), trains exactly the
assistant's words and its end-of-turn token, and is found from the model it belongs to."""

import hashlib

import pytest

from curate.chat_templates import (ModelFacts, Selection, TemplateRefused, render, render_text,
                                   select_template)
from curate.errors import CurateError
from curate.pluginmanager import build_host
from curate.plugins.chat_template_sources import HERE, patched, trl_file
from curate.plugins.chat_templates import BUILTIN_TEMPLATES
from curate.example_checks import ExampleJudge
from support import tiny_tokenizers as tiny
from support.conversations import CONVERSATIONS

TEMPLATES = {template.name: template for template in BUILTIN_TEMPLATES}


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    """One tiny tokenizer per family, trained here."""
    folder = tmp_path_factory.mktemp("tokenizers")
    return {family: tiny.build_tokenizer(folder / family, family) for family in tiny.FAMILIES}


def tokenizer_for(name, tokenizers):
    return tokenizers[tiny.TEMPLATE_FAMILY[name]]


def rendering(tokenizer, template_text, messages):
    try:
        return render_text(tokenizer, template_text, messages)
    except TemplateRefused as error:
        return f"refused: {error}"


def test_the_fixed_set_has_at_least_twenty_conversations():
    assert len(CONVERSATIONS) >= 20


def test_the_issue_s_families_are_built_in():
    assert {"llama3", "llama3.1", "llama3.2", "qwen2.5", "qwen3", "mistral", "gemma2", "gemma3",
            "phi3"} <= set(TEMPLATES)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_each_renders_byte_identically_to_its_original(name, tokenizers):
    template = TEMPLATES[name]
    tokenizer = tokenizer_for(name, tokenizers)
    original = template.original_texts()[0]
    assert template.text() != original
    for title, messages in CONVERSATIONS.items():
        assert rendering(tokenizer, template.text(), messages) == rendering(
            tokenizer, original, messages), title


# curate's copy of the Mistral v3 template (the `chat_template` of Mistral-7B-Instruct-v0.3's
# tokenizer_config.json; llama.cpp's tests/test-chat-template.cpp carries the same template as
# "Mistral-Large-Instruct-2407 (mistralai 'v3' template)"). Re-importing it must be deliberate,
# and the renderings below, which come from outside curate, must still hold.
MISTRAL_V3_SHA256 = "e16746b40344d6c5b5265988e0328a0bf7277be86f1c335156eae07e29c82826"

# llama.cpp's test conversation and the `expected_output_jinja` it records for that template
# (its bos_token is "", so the tiny tokenizer's "<s>" is added in front).
LLAMA_CPP_CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant"},
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi there"},
    {"role": "user", "content": "Who are you"},
    {"role": "assistant", "content": "   I am an assistant   "},
    {"role": "user", "content": "Another question"},
]
LLAMA_CPP_MISTRAL_V3 = ("[INST] Hello[/INST] Hi there</s>[INST] Who are you[/INST] I am an"
                        " assistant</s>[INST] You are a helpful assistant\n\nAnother"
                        " question[/INST]")

# Derived by hand from Mistral's documented v3 format, `<s>[INST] user[/INST] assistant</s>`:
# no space before [/INST], one before the reply, replies trimmed, user text as is, and the
# system prompt joined to the last user turn only (so lost when an assistant turn ends).
MISTRAL_V3_BY_HAND = {
    "single turn": "<s>[INST] What is two plus two?[/INST] It is four.</s>",
    "two rounds": "<s>[INST] Hi[/INST] Hello</s>[INST] How are you?[/INST] Fine, thanks.</s>",
    "single turn with system": "<s>[INST] Hi[/INST] Hello there</s>",
    "padded content": "<s>[INST]   spaced question  \n[/INST] spaced answer</s>",
}


@pytest.mark.parametrize("which", ["original", "training"])
def test_mistral_renders_what_llama_cpp_and_mistral_s_format_say(which, tokenizers):
    mistral = TEMPLATES["mistral"]
    text = mistral.original_texts()[0] if which == "original" else mistral.text()
    tokenizer = tokenizer_for("mistral", tokenizers)
    assert render_text(tokenizer, text, LLAMA_CPP_CONVERSATION) == "<s>" + LLAMA_CPP_MISTRAL_V3
    for title, expected in MISTRAL_V3_BY_HAND.items():
        assert render_text(tokenizer, text, CONVERSATIONS[title]) == expected, title
    ends_with_user = [{"role": "system", "content": "Be brief."},
                      *CONVERSATIONS["two rounds"][:2], {"role": "user", "content": "Bye"}]
    assert render_text(tokenizer, text, ends_with_user) == (
        "<s>[INST] Hi[/INST] Hello</s>[INST] Be brief.\n\nBye[/INST]")


def test_curate_s_copy_of_mistral_v3_is_the_pinned_one():
    copy = HERE / "mistral_v3.jinja"
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == MISTRAL_V3_SHA256


def test_refusals_are_the_original_s_own(tokenizers):
    gemma = TEMPLATES["gemma2"]
    text = rendering(tokenizer_for("gemma2", tokenizers), gemma.text(),
                     CONVERSATIONS["single turn with system"])
    assert text == "refused: System role not supported"


def expected_trained(name, messages):
    """What the model must learn to say in each assistant turn, per family."""
    replies = [m["content"] for m in messages if m["role"] == "assistant"]
    last_query = max(i for i, m in enumerate(messages) if m["role"] == "user")
    if name.startswith("llama3"):
        return [r.strip() + "<|eot_id|>" for r in replies]
    if name == "qwen2.5":
        return ["\n" + r + "<|im_end|>\n" for r in replies]
    if name == "qwen3":
        return ["<think>\n\n</think>\n\n" + r + "<|im_end|>\n" if messages.index(
            message) > last_query else r + "<|im_end|>\n"
                for message in messages if message["role"] == "assistant" for r in [
                    message["content"]]]
    if name == "mistral":
        return [" " + r.strip() + "</s>" for r in replies]
    if name.startswith("gemma"):
        return [r.strip() + "<end_of_turn>\n" for r in replies]
    if name.startswith("phi3"):
        return [r + "<|end|>\n" for r in replies[:-1]] + [replies[-1] + "<|end|>\n<|endoftext|>"]
    raise AssertionError(name)


def trained_pieces(tokenizer, template_text, messages):
    text = render_text(tokenizer, template_text, messages)
    example = render(tokenizer, template_text, messages)
    # Byte-level tokens of one character share its span: a run's text spans first to last.
    return [text[example.offsets[start][0]:example.offsets[end - 1][1]]
            for start, end in example.trained_runs()]


PLAIN = [title for title in CONVERSATIONS
         if title not in ("think tags in reply", "two users in a row")]


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_the_mask_covers_exactly_each_reply_and_its_end_of_turn(name, tokenizers):
    template, tokenizer = TEMPLATES[name], tokenizer_for(name, tokenizers)
    checked = 0
    for title in PLAIN:
        messages = CONVERSATIONS[title]
        try:
            pieces = trained_pieces(tokenizer, template.text(), messages)
        except TemplateRefused:
            continue
        assert pieces == expected_trained(name, messages), title
        checked += 1
    assert checked >= 15


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_each_refuses_its_control_tokens_spelled_in_text(name, tokenizers):
    """The tokenizer reads the spelling as the token: an end of turn mid-answer, a fake turn."""
    template, tokenizer = TEMPLATES[name], tokenizer_for(name, tokenizers)
    judge = ExampleJudge(tokenizer, Selection(template.text(), name, "named", template), 4_096)
    plain = CONVERSATIONS["single turn"]
    assert judge.judge(plain)[0] is None
    for token in {*tiny.FAMILIES[tiny.TEMPLATE_FAMILY[name]].special, *template.end_of_turn}:
        spelled = [plain[0], {"role": "assistant", "content": f"It ends with {token} here."}]
        verdict, _ = judge.judge(spelled)
        assert verdict.reason == "special-token-in-text", token
        assert verdict.evidence == {"token": token, "message": 1}


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_each_is_found_by_its_tokenizer_s_fingerprint(name, tmp_path):
    template = TEMPLATES[name]
    tokenizer = tiny.build_tokenizer(tmp_path / "model", tiny.TEMPLATE_FAMILY[name],
                                     chat_template=template.original_texts()[0])
    facts = ModelFacts(None, ["model"], tmp_path, [], tokenizer.chat_template)
    selection = select_template(facts, build_host().registry("chat template"))
    assert (selection.label, selection.how) == (
        name, "its tokenizer's template is this family's original")


@pytest.mark.parametrize("model, expected", [
    ("meta-llama/Meta-Llama-3-8B-Instruct", "llama3"),
    ("meta-llama/Llama-3.1-8B-Instruct", "llama3.1"),
    ("meta-llama/Llama-3.3-70B-Instruct", "llama3.1"),
    ("meta-llama/Llama-3.2-1B-Instruct", "llama3.2"),
    ("Qwen/Qwen2.5-0.5B-Instruct", "qwen2.5"),
    ("Qwen/Qwen3-8B", "qwen3"),
    ("mistralai/Mistral-7B-Instruct-v0.3", "mistral"),
    ("google/gemma-2-9b-it", "gemma2"),
    ("google/gemma-3-4b-it", "gemma3"),
    ("microsoft/Phi-3-mini-4k-instruct", "phi3"),
    ("microsoft/Phi-3.5-mini-instruct", "phi3.5"),
])
def test_each_is_found_by_the_model_s_name(model, expected, tmp_path):
    facts = ModelFacts(None, [model], tmp_path)
    assert select_template(facts, build_host().registry("chat template")).label == expected


def test_an_architecture_that_means_one_family_decides(tmp_path):
    registry = build_host().registry("chat template")
    facts = ModelFacts(None, ["my-finetune"], tmp_path, ["Gemma3ForCausalLM"])
    assert select_template(facts, registry).label == "gemma3"


def test_a_patch_that_no_longer_fits_its_original_fails_loudly():
    broken = patched(lambda: "{{ something else }}", ("{{- message }}", "{{- other }}"))
    with pytest.raises(CurateError, match="its original changed"):
        broken()


def test_a_file_trl_does_not_ship_is_a_clear_error():
    with pytest.raises(CurateError, match=r"the installed trl has no chat_templates/no_such"):
        trl_file("no_such")()


class FrozenDay:
    """Stands in for the `datetime` transformers' `strftime_now` reads: a chosen day."""

    def __init__(self, day):
        self.day = day

    def now(self):
        return self.day


def render_on(day, monkeypatch, tokenizer, text, messages):
    import datetime

    import transformers.utils.chat_template_utils as jinja_utils

    monkeypatch.setattr(jinja_utils, "datetime", FrozenDay(datetime.datetime(*day)))
    return render_text(tokenizer, text, messages)


def llama3_2_selection(tmp_path, **facts):
    return select_template(ModelFacts(None, ["Llama-3.2-1B"], tmp_path, **facts),
                           build_host().registry("chat template"))


def test_llama3_2_s_original_writes_today_s_date(tokenizers, monkeypatch):
    """Why the date is fixed: the original's text changes with the day it is rendered."""
    tokenizer, messages = tokenizer_for("llama3.2", tokenizers), CONVERSATIONS["single turn"]
    original = TEMPLATES["llama3.2"].original_texts()[0]
    assert "Today Date: 01 Mar 2025" in render_on((2025, 3, 1), monkeypatch, tokenizer,
                                                  original, messages)
    assert "Today Date: 02 Mar 2025" in render_on((2025, 3, 2), monkeypatch, tokenizer,
                                                  original, messages)


def test_llama3_2_renders_the_same_text_on_different_days(tokenizers, monkeypatch, tmp_path):
    tokenizer, messages = tokenizer_for("llama3.2", tokenizers), CONVERSATIONS["single turn"]
    text = llama3_2_selection(tmp_path).text
    first = render_on((2025, 3, 1), monkeypatch, tokenizer, text, messages)
    assert first == render_on((2031, 12, 24), monkeypatch, tokenizer, text, messages)
    assert "Today Date: 26 Jul 2024\n" in first


def test_the_recipe_s_template_date_is_the_one_written(tokenizers, monkeypatch, tmp_path):
    tokenizer, messages = tokenizer_for("llama3.2", tokenizers), CONVERSATIONS["single turn"]
    text = llama3_2_selection(tmp_path, template_date="05 Nov 2025").text
    assert "Today Date: 05 Nov 2025\n" in render_on((2025, 3, 1), monkeypatch, tokenizer,
                                                    text, messages)


def test_templates_without_a_date_are_used_unchanged(tmp_path):
    selection = select_template(ModelFacts(None, ["Qwen2.5-7B"], tmp_path),
                                build_host().registry("chat template"))
    assert selection.text == TEMPLATES["qwen2.5"].text()
