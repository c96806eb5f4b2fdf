"""A Qwen2-type model folder's tokenizer, built here, whose tokenizer.json groups digits by
three while the Qwen2Tokenizer class splits one digit each: which class loads it decides how
many tokens a text is."""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from support.tiny_tokenizers import CORPUS

QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
              r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
"""The tokenizer.json pre-tokenizer, digits grouped by three."""
DIGITS = "The answer is 123456789123."


def qwen2_folder(folder: Path, tokenizer_class: str) -> Path:
    """A tokenizer saved as a Qwen2 model folder holds it, its tokenizer_config.json naming
    `tokenizer_class`."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[AddedToken(t, special=True, normalized=False)
                        for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")])
    tokenizer.train_from_iterator([CORPUS + " ".join(map(str, range(100, 1000)))], trainer)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>",
                            pad_token="<|endoftext|>").save_pretrained(folder)
    config = folder / "tokenizer_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()),
                                  "tokenizer_class": tokenizer_class}))
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2",
                                                    "architectures": ["Qwen2ForCausalLM"]}))
    return folder
