"""The built-in chat templates: each renders byte-identically to its family's original on a
fixed set of conversations (the generation markers only add the mask), trains exactly the
assistant's words and its end-of-turn token, and is found from the model it belongs to."""


import pytest

from curate.chat_templates import ModelFacts, TemplateRefused, render, render_text, select_template
from curate.errors import CurateError
from curate.pluginmanager import build_host
from curate.plugins.chat_template_sources import patched, trl_file
from curate.plugins.chat_templates import BUILTIN_TEMPLATES
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
