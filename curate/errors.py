"""The one user-facing error class, and its recipe-specific form.

A `CurateError` is a mistake the user can fix: the CLI prints its message as one line and exits
non-zero, without a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CurateError(Exception):
    """A user mistake, reported as one clear line naming where it is and how to fix it."""

    exit_code = 2


class RecipeError(CurateError):
    """A problem in a recipe file, located by file and key path (e.g. `stages[2].threshold`)."""

    def __init__(self, file: str, key_path: str, message: str):
        self.file = file
        self.key_path = key_path
        self.message = message
        location = f"{file}: {key_path}" if key_path else file
        super().__init__(f"{location}: {message}")


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ": did you mean 'x'?" suffix naming the closest choice, or "" when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f": did you mean '{close[0]}'?" if close else ""
