"""The built-in chat templates: Llama 3.x, Qwen 2.5/3, Mistral, Gemma 2/3 and Phi-3/3.5.

Each renders byte-identically to its family's original template; the `{% generation %}` markers
only add which tokens are trained. Where trl carries the training variant it is used as is.
"""

from __future__ import annotations

from curate import hookimpl
from curate.chat_templates import ChatTemplate
from curate.plugins.chat_template_sources import (LLAMA3_1_ASSISTANT, MISTRAL_ASSISTANT,
                                                  QWEN3_ASSISTANT, QWEN3_TURN_END, own_file,
                                                  patched, trl_file)

QWEN2_5_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

BUILTIN_TEMPLATES = (
    ChatTemplate(
        "llama3", trl_file("llama3_training"), ("<|eot_id|>",),
        name_patterns=(r"llama-?3(?![.\d])",), originals=(trl_file("llama3"),),
        description="Llama 3 (8B/70B Instruct); trl's training template"),
    ChatTemplate(
        "llama3.1", patched(trl_file("llama3_1"), LLAMA3_1_ASSISTANT), ("<|eot_id|>",),
        name_patterns=(r"llama-?3\.[13]",), originals=(trl_file("llama3_1"),),
        default_system_prompt="Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024",
        description="Llama 3.1, also for Llama 3.3 names; tool-call turns are not trained"),
    ChatTemplate(
        "llama3.2", patched(trl_file("llama3_2"), LLAMA3_1_ASSISTANT), ("<|eot_id|>",),
        name_patterns=(r"llama-?3\.2",), originals=(trl_file("llama3_2"),),
        default_system_prompt="Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024",
        description="Llama 3.2 (1B/3B); its system block's date is [model] template_date"),
    ChatTemplate(
        "qwen2.5", trl_file("qwen2_5_training"), ("<|im_end|>",),
        architectures=("Qwen2ForCausalLM",), name_patterns=(r"qwen2\.5",),
        originals=(trl_file("qwen2_5"),), default_system_prompt=QWEN2_5_SYSTEM,
        description="Qwen 2.5 (ChatML); trl's training template"),
    ChatTemplate(
        "qwen3", patched(trl_file("qwen3"), QWEN3_ASSISTANT, QWEN3_TURN_END), ("<|im_end|>",),
        architectures=("Qwen3ForCausalLM", "Qwen3MoeForCausalLM"),
        name_patterns=(r"qwen-?3(?![.\d])",), originals=(trl_file("qwen3"),),
        description="Qwen 3 (ChatML, hybrid thinking); the last turn trains its <think> block"),
    ChatTemplate(
        "mistral", patched(own_file("mistral_v3"), MISTRAL_ASSISTANT), ("</s>",),
        architectures=("MistralForCausalLM",),
        name_patterns=(r"mistral-7b-instruct-v0\.3", r"mixtral-8x22b-instruct"),
        originals=(own_file("mistral_v3"),),
        description="Mistral v3 tokenizer ([INST]); the system prompt joins the last user turn,"
                    " so examples ending in an assistant turn lose it"),
    ChatTemplate(
        "gemma2", trl_file("gemma_training"), ("<end_of_turn>",),
        architectures=("Gemma2ForCausalLM", "GemmaForCausalLM"),
        name_patterns=(r"gemma-?(2|1\.1)\b", r"gemma-\d+b-it"), originals=(trl_file("gemma"),),
        description="Gemma 2 (and Gemma 1, same template); refuses system messages"),
    ChatTemplate(
        "gemma3", trl_file("gemma3_training"), ("<end_of_turn>",),
        architectures=("Gemma3ForCausalLM", "Gemma3ForConditionalGeneration"),
        name_patterns=(r"gemma-?3(?!n)",), originals=(trl_file("gemma3"),),
        description="Gemma 3; the system prompt is put in the first user turn"),
    ChatTemplate(
        "phi3", trl_file("phi3_training"), ("<|end|>", "<|endoftext|>"),
        name_patterns=(r"phi-?3(?![.\d])",), originals=(trl_file("phi3"),),
        description="Phi-3; trl's training template"),
    ChatTemplate(
        "phi3.5", trl_file("phi3_5_training"), ("<|end|>", "<|endoftext|>"),
        name_patterns=(r"phi-?3\.5",), originals=(trl_file("phi3_5"),),
        description="Phi-3.5; trl's training template"),
)


@hookimpl
def register_chat_templates(register):
    for template in BUILTIN_TEMPLATES:
        register(template)
