"""Tiny tokenizers built here, with a model family's special tokens, saved the way a model
folder holds them (tokenizer.json, tokenizer_config.json, chat template, config.json).

A byte-level BPE trained on the spot round-trips any text (Unicode included), so decoded
tokens can be compared with rendered text exactly. Nothing is downloaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

CORPUS = ("The quick brown fox jumps over the lazy dog. What is two plus two? It is four. "
          "Hello there, how can I help you today? Résumé, naïve café, 你好世界, 🙂 emoji. "
          "system user assistant model think answer question reply\n\n") * 20


@dataclass(frozen=True)
class Family:
    special: tuple[str, ...]
    bos: str | None
    eos: str


FAMILIES = {
    "llama3": Family(("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                      "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "<|python_tag|>"),
                     "<|begin_of_text|>", "<|eot_id|>"),
    "chatml": Family(("<|endoftext|>", "<|im_start|>", "<|im_end|>"), None, "<|im_end|>"),
    "mistral": Family(("<s>", "</s>", "[INST]", "[/INST]", "[TOOL_CALLS]",
                       "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]",
                       "[/TOOL_RESULTS]"), "<s>", "</s>"),
    "gemma": Family(("<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>"),
                    "<bos>", "<eos>"),
    "phi3": Family(("<s>", "<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>",
                    "<|end|>"), "<s>", "<|endoftext|>"),
}

TEMPLATE_FAMILY = {"llama3": "llama3", "llama3.1": "llama3", "llama3.2": "llama3",
                   "qwen2.5": "chatml", "qwen3": "chatml", "mistral": "mistral",
                   "gemma2": "gemma", "gemma3": "gemma", "phi3": "phi3", "phi3.5": "phi3"}


def build_tokenizer(folder: Path, family: str, chat_template: str | None = None,
                    architectures: list[str] | None = None):
    """Train a byte-level BPE with the family's special tokens, save it into `folder` (with a
    config.json when `architectures` is given), and return it loaded back from there."""
    from transformers import PreTrainedTokenizerFast

    spec = FAMILIES[family]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator([CORPUS], trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                  for t in spec.special])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=spec.bos,
                                   eos_token=spec.eos)
    if chat_template is not None:
        fast.chat_template = chat_template
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(folder)
    if architectures is not None:
        (folder / "config.json").write_text(json.dumps({"architectures": architectures}))
    return PreTrainedTokenizerFast.from_pretrained(folder)
