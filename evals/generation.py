"""Answers of the base model and of base + adapter to held-out prompts: rendered with the chat
template trained with and its generation prompt, left-padded into batches, greedy, each answer
ending at the template's end-of-turn token or after `max_new_tokens`.

Answers are remembered for the process by adapter, prompt and length, so evaluations that ask
for the same prompts (task metrics, then a judge) generate them once.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from curate.evals.examples import EvalExample

_answers: dict[tuple, str] = {}


def answers(tuned, examples: list[EvalExample], max_new_tokens: int, batch_size: int,
            log: Callable[[str], None]) -> dict[str, list[str]]:
    """{"base": [answer per example], "tuned": [...]}, in the examples' order. Prompts longer
    than max_length lose their start (as in training): `log` is told how many."""
    from curate.evals.model import SIDES

    cut = sum(length > tuned.max_length for length in prompt_lengths(tuned, examples))
    if cut:
        log(f"warning: {cut:,} of {len(examples):,} prompts are longer than max_length"
            f" {tuned.max_length} tokens: the model sees only their last {tuned.max_length}"
            f" (a system prompt at their start is lost); raise [model] max_length")
    result = {}
    for side_name in SIDES:
        keys = [(tuned.digest, side_name, max_new_tokens, json.dumps(e.prompt, sort_keys=True))
                for e in examples]
        prompts = dict(zip(keys, (e.prompt for e in examples)))
        missing = [key for key in prompts if key not in _answers]
        for start in range(0, len(missing), batch_size):
            batch = [prompts[key] for key in missing[start:start + batch_size]]
            made = generate(tuned, side_name, batch, max_new_tokens)
            _answers.update(zip(missing[start:start + batch_size], made))
        result[side_name] = [_answers[key] for key in keys]
    return result


def prompt_texts(tuned, prompts: list[list[dict]]) -> list[str]:
    """The prompts rendered with the trained template, ending with its generation prompt."""
    return [tuned.tokenizer.apply_chat_template(prompt, chat_template=tuned.template,
                                                tokenize=False, add_generation_prompt=True)
            for prompt in prompts]


def prompt_lengths(tuned, examples: list[EvalExample]) -> list[int]:
    texts = prompt_texts(tuned, [example.prompt for example in examples])
    return [len(ids) for ids in tuned.tokenizer(texts, add_special_tokens=False)["input_ids"]]


def generate(tuned, side_name: str, prompts: list[list[dict]], max_new_tokens: int) -> list[str]:
    """One batch of greedy answers from one side."""
    from curate.evals.model import device_of, inference, side

    tokenizer = tuned.tokenizer
    texts = prompt_texts(tuned, prompts)
    tokenizer.padding_side, tokenizer.truncation_side = "left", "left"
    batch = tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                      max_length=tuned.max_length, add_special_tokens=False)
    device = device_of(tuned.model)
    with side(tuned.model, side_name), inference():
        output = tuned.model.generate(
            input_ids=batch["input_ids"].to(device),
            attention_mask=batch["attention_mask"].to(device), max_new_tokens=max_new_tokens,
            do_sample=False, eos_token_id=tuned.stop_ids,
            pad_token_id=tokenizer.pad_token_id)
    new_tokens = output[:, batch["input_ids"].shape[1]:].tolist()
    return [decode(tokenizer, tokens, set(tuned.stop_ids)) for tokens in new_tokens]


def decode(tokenizer, tokens: list[int], stops: set[int]) -> str:
    """The answer up to (not including) its first end-of-turn token."""
    end = next((index for index, token in enumerate(tokens) if token in stops), len(tokens))
    return tokenizer.decode(tokens[:end], skip_special_tokens=True).strip()
