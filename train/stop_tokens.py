"""The tokens a trained model stops at: the end-of-turn tokens its template trains, and the
tokenizer's end of sequence. They are saved as the `eos_token_id` of the adapter's (and the
merged model's) `generation_config.json`, so a plain `generate()` stops where training taught
the model to, and the evaluations stop at the same ids.

A base model whose end of sequence is not the chat template's end of turn (Qwen2.5 base:
`<|endoftext|>`, trained on `<|im_end|>`) would otherwise keep talking past every answer.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from curate.chat_templates import TemplateRefused, render
from curate.template_checks import PROBES, end_token_ids, trained_turn_ends

GENERATION_CONFIG_FILE = "generation_config.json"


def trained_end_ids(tokenizer: Any, text: str, end_of_turn: tuple[str, ...],
                    label: str) -> list[int]:
    """The end-of-turn ids the template trains: those it declares that the tokenizer has, or,
    for a template that declares none, the special tokens found ending the trained turns of
    curate's test conversations (the conversations `curate validate` checks it on)."""
    if end_of_turn:
        return sorted(end_token_ids(tokenizer, end_of_turn, label))
    specials = end_token_ids(tokenizer, (), label)
    found: list[int] = []
    for probe in PROBES:
        try:
            example = render(tokenizer, text, probe)
        except TemplateRefused:  # e.g. no system role: the other probe finds the ends
            continue
        for last in trained_turn_ends(example, tokenizer):
            if last in specials and last not in found:
                found.append(last)
    return found


def stop_ids(end_ids: list[int], tokenizer: Any, existing: list[int] = ()) -> list[int]:
    """The trained end-of-turn ids, then the tokenizer's end of sequence, then any other
    stop id the model already had; each once."""
    ids = [*end_ids, tokenizer.eos_token_id, *existing]
    return list(dict.fromkeys(i for i in ids if i is not None))


def eos_ids(generation_config: Any) -> list[int]:
    return _as_list(generation_config.eos_token_id)


def save_with_stop_ids(generation_config: Any, ids: list[int], folder: Path) -> None:
    """`generation_config`, stopping at `ids`, as `folder/generation_config.json`. Written as
    its save_pretrained writes it, without that refusing a changed config whose published
    settings it finds inconsistent (a temperature without sampling: many models ship one)."""
    config = copy.deepcopy(generation_config)
    config.eos_token_id = ids[0] if len(ids) == 1 else ids or None
    config._from_model_config = False  # its own settings now, not the model config's
    folder.mkdir(parents=True, exist_ok=True)
    config.to_json_file(folder / GENERATION_CONFIG_FILE, use_diff=True,
                        keys_to_pop=["compile_config"])


def added_note(tokenizer: Any, before: list[int], after: list[int]) -> str:
    """The line training logs when the model did not stop at a trained token before; ""
    otherwise."""
    added = [i for i in after if i not in before]
    if not added:
        return ""
    names = ", ".join(tokenizer.convert_ids_to_tokens(added))
    had = ", ".join(tokenizer.convert_ids_to_tokens(before)) or "none"
    return (f"generation_config.json: eos_token_id now {after} (added {names}; the base model"
            f" stopped at {had}), so generate() stops at the end of turn trained")


def saved_stop_ids(folder: Path) -> list[int] | None:
    """The stop ids saved in `folder`'s generation_config.json; None when it has none (an
    adapter saved before curate wrote them)."""
    file = folder / GENERATION_CONFIG_FILE
    if not file.is_file():
        return None
    return _as_list(json.loads(file.read_text(encoding="utf-8")).get("eos_token_id")) or None


def _as_list(value: int | list[int] | None) -> list[int]:
    return [] if value is None else [value] if isinstance(value, int) else list(value)
