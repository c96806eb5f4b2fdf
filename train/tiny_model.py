"""A tiny Llama-shaped model with random weights and a tokenizer trained on the spot: the
plumbing demo of the quickstart, the tests' model and the benchmark's CPU model. It learns
nothing useful; it exercises every step a real model goes through, from `from_pretrained` on.

    python -m curate.train.tiny_model models/tiny --corpus recipes/data/support_chats.jsonl
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = ("<unk>", "<pad>", "<|endoftext|>", "<|im_start|>", "<|im_end|>")

CHATML_TRAINING_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "<|im_start|>assistant\n{% generation %}{{ message['content'] }}<|im_end|>{% endgeneration %}"
    "{{ '\\n' }}"  # a newline written after a block tag would be trimmed (trim_blocks)
    "{% else %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
"""ChatML, with `{% generation %}` around each answer and its `<|im_end|>`."""

DEFAULT_CORPUS = (
    "What is the capital of France? The capital of France is Paris. "
    "How do I reset my password? Open Settings, choose Security and press Reset. "
    "The quick brown fox jumps over the lazy dog. Thank you for your order! ") * 10


def build_tiny_model(folder: Path, corpus: Iterable[str] = (DEFAULT_CORPUS,), *,
                     vocab_size: int = 512, hidden_size: int = 64, layers: int = 2,
                     seed: int = 0) -> Path:
    """Save a tokenizer (byte-level BPE trained on `corpus`, ChatML special tokens and training
    template) and a random LlamaForCausalLM into `folder`; returns the folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    tokenizer = _train_tokenizer(corpus, vocab_size)
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=4096, tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def _train_tokenizer(corpus: Iterable[str], vocab_size: int):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[AddedToken(t, special=True, normalized=False)
                                                  for t in SPECIAL_TOKENS])
    tokenizer.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>",
                                   pad_token="<pad>", bos_token="<|endoftext|>",
                                   eos_token="<|im_end|>")
    fast.chat_template = CHATML_TRAINING_TEMPLATE
    return fast


def _corpus_lines(files: list[Path]) -> list[str]:
    return [line for file in files for line in file.read_text(encoding="utf-8").splitlines()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build a tiny random Llama and its tokenizer.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--corpus", type=Path, nargs="*", default=[],
                        help="text files the tokenizer is trained on (default: a few sentences)")
    args = parser.parse_args(argv)
    from transformers.utils import logging

    logging.disable_progress_bar()
    corpus = _corpus_lines(args.corpus) if args.corpus else [DEFAULT_CORPUS]
    build_tiny_model(args.folder, corpus)
    print(f"tiny model (random weights, a plumbing demo) -> {args.folder}")


if __name__ == "__main__":
    main()
