"""The recipe's tokenizer, for stages that measure in tokens.

Loaded through `transformers.AutoTokenizer` when transformers is installed (any model), else
through the `tokenizers` library from the folder's `tokenizer.json` (fast tokenizers only).
Nothing is loaded until a stage asks.
"""

from __future__ import annotations

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
    """A transformers tokenizer, for chat templates. A local folder with a tokenizer.json loads
    as a plain fast tokenizer: AutoTokenizer imports torch, which `curate validate` must not."""
    check_tokenizer_folder(location)
    try:
        if (Path(location) / "tokenizer.json").is_file():
            from transformers import PreTrainedTokenizerFast

            return PreTrainedTokenizerFast.from_pretrained(location)
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(location, revision=revision,
                                             trust_remote_code=trust_remote_code)
    except ImportError:
        raise CurateError("[model]: chat templates need transformers: pip install"
                          " 'curate[train]'") from None
    except (OSError, ValueError) as error:
        raise CurateError(f"[model]: cannot load the tokenizer '{location}'{_as_hub_id(location)}:"
                          f" {str(error).strip().splitlines()[0]}") from None


def _as_hub_id(location: str) -> str:
    return "" if Path(location).exists() else (" (no folder of that name next to the recipe, so"
                                               " it was looked up as a hub id)")


def load_token_counter(model: Any, recipe_dir: Path) -> TokenCounter:
    name = model.tokenizer or model.path
    location = tokenizer_location(model, recipe_dir)
    check_tokenizer_folder(location)
    try:
        import transformers
    except ImportError:
        return _from_tokenizers_library(recipe_dir / name, name)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            location, revision=model.revision, trust_remote_code=model.trust_remote_code)
    except (OSError, ValueError) as error:
        raise CurateError(f"[model]: cannot load the tokenizer '{name}'{_as_hub_id(location)}:"
                          f" {str(error).strip().splitlines()[0]}") from None
    return TokenCounter(lambda text: tokenizer(text, add_special_tokens=False)["input_ids"])


def _from_tokenizers_library(local: Path, name: str) -> TokenCounter:
    from tokenizers import Tokenizer

    file = local / "tokenizer.json" if local.is_dir() else local
    if not file.is_file():
        raise CurateError(f"[model]: '{name}' has no tokenizer.json: install curate[train] for"
                          f" transformers, which loads any tokenizer")
    tokenizer = Tokenizer.from_file(str(file))
    return TokenCounter(lambda text: tokenizer.encode(text, add_special_tokens=False).ids)
