"""How the `consistency` stage compares and shows text: the normalised comparison key, its 64-bit
digest, and a one-line snippet for details and evidence."""

from __future__ import annotations

import hashlib
import re
import string
import unicodedata
from functools import cache

_ASCII_BLANKED = string.punctuation.translate(str.maketrans("", "", "$+<=>^`|~"))
_ASCII_TABLE = bytes.maketrans((_ASCII_BLANKED + "".join(map(chr, range(32))) + "\x7f").encode(),
                               b" " * (len(_ASCII_BLANKED) + 33))


_MINUS = re.compile(r"(?<![\w.])-(?=\d)")


def comparison_key(text: str) -> bytes:
    """The text as compared: NFKC, casefolded, punctuation and control characters read as
    spaces, invisible (format) characters dropped, whitespace runs collapsed. A minus sign
    stays (as U+2212, a symbol): "-5" and "5" are different answers."""
    if "-" in text:
        text = _MINUS.sub("\u2212", text)
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).casefold()
    if text.isascii():  # the fast path gives the same bytes as the general one below
        key = text.lower().encode().translate(_ASCII_TABLE)
        while b"  " in key:
            key = key.replace(b"  ", b" ")
        return key.strip(b" ")
    return " ".join(text.translate(_unicode_table()).split()).encode("utf-8", "surrogatepass")


@cache
def _unicode_table() -> dict[int, str | None]:
    table: dict[int, str | None] = {}
    for code in [*range(0x40000), *range(0xE0000, 0xE1000)]:  # planes 4-13 are unassigned
        category = unicodedata.category(chr(code))
        if category[0] == "P" or category == "Cc":
            table[code] = " "
        elif category in ("Cf", "Cs"):
            table[code] = None
    return table


def key_hash(*keys: bytes) -> int:
    """A 64-bit digest of comparison keys; 0 is kept for "no text"."""
    if not any(keys):
        return 0
    digest = hashlib.blake2b(b"\x00".join(keys), digest_size=8).digest()
    return int.from_bytes(digest, "big") or 1


def snippet(text: str, width: int = 60) -> str:
    """The start of a text for a detail line, on one line."""
    flat = " ".join(text[:width * 4].split())  # bounded: a response may be a megabyte
    return flat if len(flat) <= width else flat[:width - 3].rstrip() + "..."
