"""The chat template the trainer trains with: the one seam between training and
`curate.chat_templates`, which picks it (the recipe's `[model] chat_template`, a registered
family template the model matches, or the tokenizer's own) by the same function as `curate
validate`, `curate preview` and the chat-template step (`curate.template_step.model_template`),
and the template checks they make. A run trains only with the template and tokenizer its
chat-template step checked the data with.

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


def training_template(model_options: Any, recipe_dir: Path, tokenizer: Any) -> TrainingTemplate:
    """The training template for this model, or a CurateError saying why there is none."""
    from curate.chat_templates import has_generation_markers
    from curate.pluginmanager import get_host
    from curate.template_checks import raise_errors, template_findings
    from curate.template_step import model_template

    selection = model_template(model_options, recipe_dir, tokenizer,
                               get_host().registry("chat template"))
    if not has_generation_markers(selection.text):
        raise CurateError(f"[model]: the chat template ({selection.label}) has no"
                          f" {{% generation %}} markers, so assistant-only loss cannot tell"
                          f" which tokens to train: name a training template with [model]"
                          f" chat_template")
    raise_errors(template_findings(tokenizer, selection))
    return TrainingTemplate(selection.text, selection.label, selection.how,
                            selection.end_of_turn)


def check_as_checked(template: TrainingTemplate, tokenizer: Any, run_dir: Path) -> None:
    """The template and tokenizer are those the run's chat-template step checked the data
    with (recorded in its summary); nothing to compare in a run folder without the step."""
    from curate.template_step import recorded_template, template_record

    recorded = recorded_template(run_dir)
    if recorded is None:
        return
    used = template_record(template.label, template.text, tokenizer)
    if any(recorded[key] != used[key] for key in used if key in recorded):
        raise CurateError(f"[model]: training would use {_described(used)}, but the"
                          f" chat-template step checked the data with {_described(recorded)}:"
                          f" run again with curate run --force, so that what trains is what"
                          f" was checked")


def _described(record: dict) -> str:
    tokenizer = f", tokenizer {record['tokenizer']}" if record.get("tokenizer") else ""
    return (f"chat template {record.get('label')} (sha256"
            f" {str(record.get('sha256'))[:12]}{tokenizer})")


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
