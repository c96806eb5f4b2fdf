"""The chat template the trainer trains with: the one seam between training and
`curate.chat_templates`, which picks it (the recipe's `[model] chat_template`, a registered
family template the model matches, or the tokenizer's own).

The chosen template must mark what is trained with `{% generation %}`, and each assistant turn
must end in a trained end-of-turn token, or the model never learns to stop: the rule `curate
validate` and the chat-template step apply (`curate.template_checks.untrained_turn_end`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.errors import CurateError


@dataclass
class TrainingTemplate:
    text: str
    label: str
    how: str
    end_of_turn: tuple[str, ...]
    """The template's declared end-of-turn tokens; () accepts any special token."""


def training_template(model_options: Any, recipe_dir: Path, tokenizer: Any,
                      source_names: list[str]) -> TrainingTemplate:
    """The training template for this model, or a CurateError saying why there is none."""
    from curate.chat_templates import (TEMPLATE_DATE, ModelFacts, has_generation_markers,
                                       read_architectures, select_template)
    from curate.pluginmanager import get_host

    facts = ModelFacts(getattr(model_options, "chat_template", None), source_names, recipe_dir,
                       read_architectures(source_names[0]), tokenizer.chat_template,
                       getattr(model_options, "template_date", TEMPLATE_DATE))
    selection = select_template(facts, get_host().registry("chat template"))
    if not has_generation_markers(selection.text):
        raise CurateError(f"[model]: the chat template ({selection.label}) has no"
                          f" {{% generation %}} markers, so assistant-only loss cannot tell which tokens to train:"
                          f" name a training template with [model] chat_template")
    return TrainingTemplate(selection.text, selection.label, selection.how,
                            selection.end_of_turn)


def check_stop_token_trained(tokenizer: Any, template: TrainingTemplate,
                             messages: list[dict]) -> None:
    """Every assistant turn of `messages` ends in a trained end-of-turn token (FIELD_NOTES: a
    stop token never trained makes a model that never stops, while the loss looks healthy)."""
    from curate.chat_templates import render
    from curate.template_checks import end_token_ids, untrained_end_message, untrained_turn_end

    ends = end_token_ids(tokenizer, template.end_of_turn, template.label)
    example = render(tokenizer, template.text, messages)
    problem = untrained_turn_end(example, messages, tokenizer, ends)
    if problem:
        raise CurateError(f"[model]: {untrained_end_message(template.label, problem)}")
