"""Where the built-in chat templates' text comes from, read on first use.

trl ships each family's original template and, for many, a training variant with
`{% generation %}` markers (`trl/chat_templates/*.jinja`). The files are read from the installed
trl without importing it: importing trl imports torch and datasets (about 20 s on a cold start),
and every curate command loads the built-in plugins. Where trl has no training variant, or its
variant renders differently from the original, the variant is the original plus a patch that
only adds the markers; the tests check the result renders byte-identically to the original.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from curate.errors import CurateError

HERE = Path(__file__).resolve().parent / "templates"


def trl_file(name: str) -> Callable[[], str]:
    """`trl/chat_templates/<name>.jinja` of the installed trl."""

    def read() -> str:
        spec = importlib.util.find_spec("trl")
        if spec is None or not spec.submodule_search_locations:
            raise CurateError(f"the chat template '{name}' comes from trl, which is not"
                              f" installed: pip install 'curate[train]'")
        path = Path(spec.submodule_search_locations[0]) / "chat_templates" / f"{name}.jinja"
        if not path.is_file():
            raise CurateError(f"the installed trl has no chat_templates/{name}.jinja: upgrade"
                              f" trl (pip install -U trl)")
        return path.read_text(encoding="utf-8")

    return read


def own_file(name: str) -> Callable[[], str]:
    """A template shipped with curate, in plugins/templates/."""
    return lambda: (HERE / f"{name}.jinja").read_text(encoding="utf-8")


def patched(original: Callable[[], str], *edits: tuple[str, str]) -> Callable[[], str]:
    """The original with each (old, new) edit applied; each old text must occur exactly once,
    so a changed original fails loudly instead of yielding a template that trains nothing."""

    def read() -> str:
        text = original()
        for old, new in edits:
            if text.count(old) != 1:
                raise CurateError(f"a built-in chat template cannot be built: its original"
                                  f" changed (expected once: {old.strip()[:60]!r}); name a"
                                  f" .jinja file in [model] chat_template, or pin trl")
            text = text.replace(old, new)
        return text

    return read


# Llama 3.1 and 3.2 render every non-tool message in one line; the assistant's words and its
# <|eot_id|> move into a generation block, the header stays outside (the model does not write it).
LLAMA3_1_ASSISTANT = (
    """        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}\n""",
    """        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}
        {%- if message['role'] == 'assistant' %}
            {%- generation %}
            {{- message['content'] | trim + '<|eot_id|>' }}
            {%- endgeneration %}
        {%- else %}
            {{- message['content'] | trim + '<|eot_id|>' }}
        {%- endif %}\n""",
)

# Qwen3: everything after "<|im_start|>assistant\n" up to and including "<|im_end|>\n" is the
# model's (the empty <think></think> block of the last turn included). trl's qwen3_training
# also always renders the think block, which changes multi-turn text, so it is not used.
QWEN3_ASSISTANT = (
    """        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\\n' + content }}
        {%- endif %}\n""",
    """        {{- '<|im_start|>' + message.role + '\\n' }}
        {%- generation %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}
            {%- else %}
                {{- content }}
            {%- endif %}
        {%- else %}
            {{- content }}
        {%- endif %}\n""",
)
QWEN3_TURN_END = (
    """        {{- '<|im_end|>\\n' }}\n    {%- elif message.role == "tool" %}""",
    """        {{- '<|im_end|>\\n' }}\n        {%- endgeneration %}\n    {%- elif message.role == "tool" %}""",
)

# Mistral v3: the reply is " " + words + </s>; the space belongs to the model's first token.
MISTRAL_ASSISTANT = (
    """        {{- " " + message["content"]|trim + eos_token}}\n""",
    """        {%- generation %}
        {{- " " + message["content"]|trim + eos_token}}
        {%- endgeneration %}\n""",
)
