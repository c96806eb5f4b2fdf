"""The recipe's tokenizer: one loader for the checks (`curate validate`, `curate preview`, the
chat-template step), the stages that measure in tokens and the trainer, so that all of them
count the same tokens.

transformers loads it (any model); without transformers, stages that count tokens read the
folder's `tokenizer.json` with the `tokenizers` library (fast tokenizers only). Nothing is loaded
until a stage asks.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from curate.errors import CurateError


class TokenCounter:
    """Counts the tokens of a text, without special tokens."""

    def __init__(self, encode):
        self._encode = encode

    def count(self, text: str) -> int:
        return len(self._encode(text))


def tokenizer_location(model: Any, recipe_dir: Path) -> str:
    """The recipe's tokenizer: a local folder (absolute), else the name as given (a hub id)."""
    name = model.tokenizer or model.path
    local = recipe_dir / name
    return str(local.resolve()) if local.exists() else name


TOKENIZER_MARKERS = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def check_tokenizer_folder(location: str) -> None:
    """A local folder without any tokenizer file: one line, instead of the loader's puzzle."""
    folder = Path(location)
    if folder.is_dir() and not any((folder / name).is_file() for name in TOKENIZER_MARKERS):
        raise CurateError(f"[model]: no tokenizer in {folder} (none of"
                          f" {', '.join(TOKENIZER_MARKERS)}): copy the model's tokenizer files"
                          f" there, or name another folder in [model] tokenizer")


def load_chat_tokenizer(location: str, revision: str | None = None,
                        trust_remote_code: bool = False) -> Any:
    """The recipe's tokenizer as the trainer trains with it (`curate.train.model` loads it
    here too). A local folder whose tokenizer_config.json names a transformers class loads
    with that class, as AutoTokenizer does: a class such as Qwen2Tokenizer or GemmaTokenizer
    rebuilds the pre-tokenizer its own way, so the folder's tokenizer.json alone would count
    other tokens. Importing the class keeps torch out of `curate validate` (AutoTokenizer
    imports it, with transformers' model configs); for the model types where AutoTokenizer
    overrides the class named, the trainer compares the two before training
    (`curate.train.model.check_tokenizer_as_auto`). Anything else (a hub id, remote code, no
    class named) loads through AutoTokenizer."""
    check_tokenizer_folder(location)
    try:
        declared = declared_tokenizer_class(location)
        if declared is not None:
            return declared.from_pretrained(location)
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(location, revision=revision,
                                             trust_remote_code=trust_remote_code)
    except ImportError:
        raise CurateError("[model]: chat templates need transformers: pip install"
                          " 'curate[train]'") from None
    except (OSError, ValueError) as error:
        raise CurateError(f"[model]: cannot load the tokenizer '{location}'{_as_hub_id(location)}:"
                          f" {_reason(error)}") from None


def _reason(error: Exception) -> str:
    reason = (str(error).strip() or type(error).__name__).splitlines()[0]
    if "custom code" in reason or "trust_remote_code" in reason:
        return ("it ships its own Python code, which curate does not run unless the recipe says"
                " [model] trust_remote_code = true (only for code you trust)")
    return reason


GENERIC_CLASSES = ("PreTrainedTokenizerFast", "TokenizersBackend", "PythonBackend")
"""Names of transformers' plain tokenizer, which loads tokenizer.json as it is."""


def declared_tokenizer_class(location: str) -> Any:
    """The transformers class a local folder's tokenizer_config.json names, as AutoTokenizer
    resolves it; None for a hub id, remote code (`auto_map`), no class named, or a name
    transformers does not have. A Llama class over a byte-level tokenizer.json loads as the
    plain tokenizer, as AutoTokenizer does (LlamaTokenizer would rebuild a sentencepiece one)."""
    config = _read_json(Path(location) / "tokenizer_config.json")
    name = config.get("tokenizer_class")
    if not isinstance(name, str) or "auto_map" in config:
        return None
    import transformers

    if name in GENERIC_CLASSES or (name.removesuffix("Fast") == "LlamaTokenizer"
                                   and _byte_level(Path(location) / "tokenizer.json")):
        return transformers.TokenizersBackend
    for candidate in (name, name.removesuffix("Fast")):
        try:
            return getattr(transformers, candidate)
        except (AttributeError, ImportError):  # unknown, or a dependency it needs is missing
            continue
    return None


def _byte_level(tokenizer_file: Path) -> bool:
    pre_tokenizer = _read_json(tokenizer_file).get("pre_tokenizer") or {}
    parts = pre_tokenizer.get("pretokenizers") or [pre_tokenizer]
    return any(isinstance(part, dict) and part.get("type") == "ByteLevel" for part in parts)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _as_hub_id(location: str) -> str:
    return "" if Path(location).exists() else (" (no folder of that name next to the recipe, so"
                                               " it was looked up as a hub id)")


def load_token_counter(model: Any, recipe_dir: Path) -> TokenCounter:
    name = model.tokenizer or model.path
    location = tokenizer_location(model, recipe_dir)
    check_tokenizer_folder(location)
    if importlib.util.find_spec("transformers") is None:
        return _from_tokenizers_library(recipe_dir / name, name)
    tokenizer = load_chat_tokenizer(location, model.revision, model.trust_remote_code)
    return TokenCounter(lambda text: tokenizer(text, add_special_tokens=False)["input_ids"])


def _from_tokenizers_library(local: Path, name: str) -> TokenCounter:
    from tokenizers import Tokenizer

    file = local / "tokenizer.json" if local.is_dir() else local
    if not file.is_file():
        raise CurateError(f"[model]: '{name}' has no tokenizer.json: install curate[train] for"
                          f" transformers, which loads any tokenizer")
    tokenizer = Tokenizer.from_file(str(file))
    return TokenCounter(lambda text: tokenizer.encode(text, add_special_tokens=False).ids)
