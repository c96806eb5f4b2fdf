"""Generation as the evaluations run it: answers end at the template's end-of-turn token (not
only at the tokenizer's end of sequence), and batching does not change greedy answers."""

import pytest

from curate import hookimpl
from curate.chat_templates import ChatTemplate
from curate.evals import generation
from curate.evals.examples import EvalExample
from curate.evals.generation import answers, decode, generate
from curate.evals.model import TunedModel, load_tuned, stop_ids
from curate.train.tiny_model import CHATML_TRAINING_TEMPLATE

PROMPT = [{"role": "user", "content": "What is the code word 3?"}]


def register_template(curate_plugin, label: str, end_of_turn: str) -> None:
    class TemplatePlugin:
        @hookimpl
        def register_chat_templates(self, register):
            register(ChatTemplate(label, CHATML_TRAINING_TEMPLATE, (end_of_turn,)))

    curate_plugin(TemplatePlugin(), name=f"test-{label}")


@pytest.fixture
def tokenizer(tiny_model):
    """The tiny tokenizer with an end of sequence that is not ChatML's end of turn."""
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(tiny_model, eos_token="<|endoftext|>")
    assert loaded.eos_token_id != loaded.convert_tokens_to_ids("<|im_end|>")
    return loaded


def test_stop_ids_hold_the_templates_end_of_turn_and_the_eos(tokenizer, curate_plugin):
    register_template(curate_plugin, "eot-chatml", "<|im_end|>")
    ids = stop_ids(tokenizer, {"template": {"label": "eot-chatml"}})
    assert ids == sorted({tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.eos_token_id})


def test_an_adapter_saved_without_stop_ids_stops_where_its_own_template_ends_turns(tokenizer):
    ids = stop_ids(tokenizer, {"template": {"label": "of the tokenizer"}},
                   CHATML_TRAINING_TEMPLATE)
    assert ids == sorted({tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.eos_token_id})


def test_decoding_stops_at_the_end_of_turn_token(tokenizer):
    answer = tokenizer.encode("The code word 3", add_special_tokens=False)
    more = tokenizer.encode(" is stone.", add_special_tokens=False)
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    tokens = answer + [end_of_turn] + more
    assert decode(tokenizer, tokens, {end_of_turn}) == "The code word 3"
    assert decode(tokenizer, tokens, {tokenizer.eos_token_id}) == "The code word 3 is stone."


def test_generation_stops_at_the_registered_end_of_turn_token(tiny_model, tokenizer,
                                                              curate_plugin):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    tuned = TunedModel(model, tokenizer, CHATML_TRAINING_TEMPLATE, [tokenizer.eos_token_id], 64,
                       "no-adapter")
    unstopped = unstopped_tokens(tuned)
    stop_at = next(i for i in range(1, len(unstopped)) if unstopped[i] not in unstopped[:i])
    register_template(curate_plugin, "eot-random", tokenizer.convert_ids_to_tokens(
        unstopped[stop_at]))
    tuned.stop_ids = stop_ids(tokenizer, {"template": {"label": "eot-random"}})
    assert unstopped[stop_at] in tuned.stop_ids
    said = generate(tuned, "tuned", [PROMPT], max_new_tokens=12)
    assert said == [tokenizer.decode(unstopped[:stop_at], skip_special_tokens=True).strip()]


def unstopped_tokens(tuned: TunedModel) -> list[int]:
    """The random model's greedy tokens for PROMPT, with nothing but eos to stop them."""
    text = tuned.tokenizer.apply_chat_template(PROMPT, chat_template=tuned.template,
                                               tokenize=False, add_generation_prompt=True)
    ids = tuned.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    output = tuned.model.generate(input_ids=ids, max_new_tokens=12, do_sample=False,
                                  eos_token_id=tuned.stop_ids,
                                  pad_token_id=tuned.tokenizer.pad_token_id)
    return output[0, ids.shape[1]:].tolist()


def test_batched_answers_equal_one_at_a_time(evaluated_run, monkeypatch):
    _, run_dir, _ = evaluated_run
    questions = ["What is the code word 3?", "Code word 10?",
                 "Please tell me: what is the code word 7? Only the word, thank you.",
                 "What is the code word 1? The code word 1 is"]
    examples = [EvalExample(str(i), "d", i, [], [{"role": "user", "content": question}], "")
                for i, question in enumerate(questions)]
    tuned = load_tuned(run_dir)
    lengths = {len(tuned.tokenizer.encode(question)) for question in questions}
    assert len(lengths) == 4  # prompts of different lengths: the batch is left-padded
    monkeypatch.setattr(generation, "_answers", {})  # no answers remembered from other tests
    lines = []
    one_at_a_time = answers(tuned, examples, 12, 1, lines.append)
    monkeypatch.setattr(generation, "_answers", {})
    batched = answers(tuned, examples, 12, 4, lines.append)
    assert batched == one_at_a_time
    assert len(set(batched["base"])) > 1
    assert lines == []  # every prompt within max_length


def test_prompts_longer_than_max_length_are_reported(evaluated_run, monkeypatch):
    _, run_dir, _ = evaluated_run
    tuned = load_tuned(run_dir)
    long = "Tell me the code word. " * tuned.max_length
    examples = [EvalExample(str(i), "d", i, [], [{"role": "user", "content": question}], "")
                for i, question in enumerate(["What is the code word 3?", long])]
    monkeypatch.setattr(generation, "_answers", {})
    lines = []
    said = answers(tuned, examples, 4, 2, lines.append)
    assert len(said["tuned"]) == 2
    assert lines == [f"warning: 1 of 2 prompts are longer than max_length {tuned.max_length}"
                     f" tokens: the model sees only their last {tuned.max_length} (a system"
                     f" prompt at their start is lost); raise [model] max_length"]
