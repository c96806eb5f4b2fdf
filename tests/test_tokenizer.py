"""One tokenizer for every part of curate: the checks (validate, preview, the chat-template
step), the token-counting stages and the trainer load it the same way, as AutoTokenizer would,
and `curate validate` still never imports torch (on tokenizers built here)."""

import json
import os
import subprocess
import sys
import textwrap

from curate.recipe import ModelOptions
from curate.tokenizer import load_chat_tokenizer, load_token_counter
from support import tiny_tokenizers as tiny
from support.qwen2_tokenizer import DIGITS, qwen2_folder


def token_count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_the_checks_count_the_tokens_autotokenizer_counts(tmp_path):
    from transformers import AutoTokenizer

    folder = qwen2_folder(tmp_path / "model", "Qwen2Tokenizer")
    auto = AutoTokenizer.from_pretrained(folder)
    ours = load_chat_tokenizer(str(folder))
    assert type(ours) is type(auto) and type(ours).__name__ == "Qwen2Tokenizer"
    assert token_count(ours, DIGITS) == token_count(auto, DIGITS) > len("123456789123")
    counter = load_token_counter(ModelOptions(path="model"), tmp_path)
    assert counter.count(DIGITS) == token_count(auto, DIGITS)


def test_loading_a_named_tokenizer_class_imports_no_torch(tmp_path):
    folder = qwen2_folder(tmp_path / "model", "Qwen2Tokenizer")
    code = textwrap.dedent(f"""
        import sys
        from curate.tokenizer import load_chat_tokenizer
        print(type(load_chat_tokenizer({str(folder)!r})).__name__,
              [m for m in ("torch", "datasets") if m in sys.modules])
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd="/", env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-2] == "Qwen2Tokenizer []"


def test_which_class_a_folder_names(tmp_path):
    import transformers

    from curate.tokenizer import declared_tokenizer_class

    byte_level = tmp_path / "llama-byte-level"
    tiny.build_tokenizer(byte_level, "llama3")
    for name, expected in [("PreTrainedTokenizerFast", transformers.TokenizersBackend),
                           ("GemmaTokenizerFast", transformers.GemmaTokenizer),
                           # a Llama class would rebuild a sentencepiece pre-tokenizer
                           ("LlamaTokenizerFast", transformers.TokenizersBackend),
                           ("NoSuchTokenizer", None)]:
        config = byte_level / "tokenizer_config.json"
        config.write_text(json.dumps({**json.loads(config.read_text()), "tokenizer_class": name}))
        assert declared_tokenizer_class(str(byte_level)) is expected, name
    config.write_text(json.dumps({"tokenizer_class": "Qwen2Tokenizer",
                                  "auto_map": {"AutoTokenizer": ["x.Tok", None]}}))
    assert declared_tokenizer_class(str(byte_level)) is None  # remote code: AutoTokenizer's call
    assert declared_tokenizer_class("Qwen/Qwen2.5-0.5B-Instruct") is None
