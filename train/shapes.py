"""Shapes of common base models, from their published config.json, so `curate estimate` works
for a hub id without downloading anything. Keys are matched against the model's name."""

from __future__ import annotations

import json
import re
from pathlib import Path

from curate.errors import CurateError, did_you_mean

SHAPES = {
    "llama-3.1-8b": {
        "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
        "tie_word_embeddings": False, "architectures": ["LlamaForCausalLM"]},
    "llama-3.1-70b": {
        "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
        "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 128256,
        "tie_word_embeddings": False, "architectures": ["LlamaForCausalLM"]},
    "qwen2.5-7b": {
        "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
        "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
        "tie_word_embeddings": False, "architectures": ["Qwen2ForCausalLM"]},
    "mistral-7b": {
        "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32768,
        "tie_word_embeddings": False, "architectures": ["MistralForCausalLM"]},
    "gemma-2-9b": {
        "hidden_size": 3584, "intermediate_size": 14336, "num_hidden_layers": 42,
        "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 256,
        "vocab_size": 256000, "tie_word_embeddings": True,
        "architectures": ["Gemma2ForCausalLM"]},
}

_PATTERNS = {
    "llama-3.1-8b": r"llama-?3\.[13]-8b",
    "llama-3.1-70b": r"llama-?3\.[13]-70b",
    "qwen2.5-7b": r"qwen2\.5-7b",
    "mistral-7b": r"mistral-7b",
    "gemma-2-9b": r"gemma-?2-9b",
}


def shape_for_name(name: str) -> str | None:
    """The bundled shape a model name means (`meta-llama/Llama-3.1-8B-Instruct` ->
    `llama-3.1-8b`), or None."""
    if name.lower() in SHAPES:
        return name.lower()
    for key, pattern in _PATTERNS.items():
        if re.search(pattern, name, re.IGNORECASE):
            return key
    return None


def resolve_shape(model_path: str | None, recipe_dir: Path, shape: str | None) -> tuple[dict, str]:
    """The config of the model to estimate, and where it came from: a bundled shape named by
    `shape`, the config.json of a local model folder, or the bundled shape its name matches."""
    if shape:
        if shape not in SHAPES:
            raise CurateError(f"unknown shape '{shape}'{did_you_mean(shape, SHAPES)} (bundled:"
                              f" {', '.join(SHAPES)})")
        return SHAPES[shape], f"bundled shape {shape}"
    if not model_path:
        raise CurateError(f"no model to estimate: set [model] path in the recipe, or pass"
                          f" --shape ({', '.join(SHAPES)})")
    config_file = recipe_dir / model_path / "config.json"
    if config_file.is_file():
        return _read_config(config_file), str(config_file)
    matched = shape_for_name(model_path)
    if matched:
        return SHAPES[matched], f"bundled shape {matched}, matching '{model_path}'"
    raise CurateError(f"[model] path '{model_path}': no local config.json and no bundled shape"
                      f" matches; pass --shape ({', '.join(SHAPES)}) or a local model folder")


def _read_config(file: Path) -> dict:
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except ValueError as error:
        raise CurateError(f"{file}: not valid JSON ({error})") from None
    config = config.get("text_config", config) if "hidden_size" not in config else config
    missing = [key for key in REQUIRED_KEYS if key not in config]
    if missing:
        raise CurateError(f"{file}: no {', '.join(missing)}: not a decoder config this estimate"
                          f" knows; pass --shape ({', '.join(SHAPES)})")
    return config


REQUIRED_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "vocab_size")
