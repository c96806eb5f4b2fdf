"""The chat template a trained model ships for inference, beside the one it trained with.

The training template carries `{% generation %}` markers, which only transformers' own Jinja
knows (llama-cpp-python fails to load them, its issue #2225), and curate's fixed Llama 3.x
`date_string`, which would override the date a caller passes. So the saved model's
`chat_template.jinja` is the family's original template for a registered one, else the
training text with both taken out; the training text is kept in `chat_template.training.jinja`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from curate.chat_templates import with_fixed_date

TEMPLATE_FILE = "chat_template.jinja"
TRAINING_TEMPLATE_FILE = "chat_template.training.jinja"

GENERATION_TAG = re.compile(r"\{%(-?)\s*((?:end)?generation)\s*(-?)%\}")
FIXED_DATE = re.compile(r'\{%- set date_string = ("(?:[^"\\]|\\.)*") %\}')


def inference_template(training_text: str, label: str) -> str:
    """The registered template's original when it has one, else the training text without
    curate's markers and fixed date."""
    from curate.pluginmanager import get_host

    entry = get_host().registry("chat template").entries.get(label)
    originals = entry.obj.original_texts() if entry else []
    return originals[0] if originals else without_training_parts(training_text)


def without_training_parts(text: str) -> str:
    """`text` with its generation tags made comments (a comment trims whitespace exactly as a
    tag does, so every conversation renders the same) and the date curate fixed removed."""
    return GENERATION_TAG.sub(r"{#\1 \2 \3#}", _without_fixed_date(text))


def _without_fixed_date(text: str) -> str:
    """`text` without the `date_string` line `with_fixed_date` put in front of it, if it did."""
    match = FIXED_DATE.match(text)
    if match and with_fixed_date(text[match.end():], json.loads(match[1])) == text:
        return text[match.end():]
    return text


def saved_training_template(folder: Path) -> str:
    """The template a saved adapter or merged model was trained with (one saved before curate
    kept both has only chat_template.jinja, which then is the training template)."""
    file = folder / TRAINING_TEMPLATE_FILE
    return (file if file.is_file() else folder / TEMPLATE_FILE).read_text(encoding="utf-8")
