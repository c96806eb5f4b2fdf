"""curate: turn raw instruction data into a fine-tuned model you can trust."""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("curate")
"""Decorator that marks a function in a plugin module as an implementation of a curate hook."""

__all__ = ["__version__", "hookimpl"]
