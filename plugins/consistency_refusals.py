"""The built-in refusal patterns of the `consistency` stage. A boilerplate refusal declines the
request itself and offers nothing else, so a response counts as one only when all three hold:

- it opens with the refusal, after at most a few lead-ins ("I'm sorry, but", "Unfortunately",
  "As an AI language model,"): "I can't help with that" quoted mid-answer is not a refusal;
- the refusal declines the request as such: "I can't help / assist with that", "I cannot
  comply", "I can't fulfil this request", "I must decline", or anything an AI disclaimer
  introduces ("As an AI language model, I cannot ..."); "I'm sorry, but I can't find order
  88123" or "I can't refund boots after 30 days" decline something else and go on to help;
- it is short (at most REFUSAL_MAX_WORDS words) and does not turn after the refusal ("but",
  "however", "instead", "here is"): a response that goes on to help is not a refusal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

REFUSAL_MAX_WORDS = 50
_OPENING_CHARS = 400  # the lead-ins and the refusal clause fit well within this

_SORRY = (r"(?:i(?:'m| am) (?:really |very |so |truly )?sorry|sorry|i apologi[sz]e|my apologies"
          r"|unfortunately|regrettably|i(?:'m| am) afraid(?: that)?)(?:,? but)?")
_AI = (r"(?:as an ai(?: language model| model| assistant)?|as a (?:large )?language model"
       r"|i(?:'m| am) (?:just |only )?an ai(?: language model| model| assistant)?(?: and)?)")
_GAP = r"[\s,.;:!-]*"
_NOT = (r"i(?:'m| am) (?:unable|not able|not allowed|not permitted) to"
        r"|i (?:can't|cannot|can not|won't|will not|must decline to|have to decline to)")
_OBJECT = (r"(?:[\w'-]+ ){0,4}?(?:that|this|it|them|requests?|tasks?|content|questions?|query"
           r"|queries|topics?|information|advice|assistance)")
_VERB = (rf"(?:(?:help|assist)(?: you)?(?: with {_OBJECT})?|comply(?: with {_OBJECT})?"
         rf"|answer(?: {_OBJECT})?|do (?:that|this|it|so)|(?:continue|proceed)(?: with {_OBJECT})?"
         rf"|(?:respond to|engage in|participate in|discuss|provide|give|offer|share|fulfil+"
         rf"|complete|process|create|generate|write|produce|support) {_OBJECT})")
_CLAUSE_END = r"(?=\s*(?:[.!;:,)]|$|(?:as|because|since|due to|given)\b))"
_DECLINE = (r"i (?:must|have to|will have to|need to) (?:respectfully |politely )?decline"
            r"(?: (?:that|this|your|the) request| to (?:do so|help|assist|answer))?")
_SOMETHING = r"(?:that|this|it)(?:'s| is) not something i (?:can|am able to) (?:help|assist) with"

DECLINING = re.compile(rf"^(?:{_SORRY}{_GAP}|{_AI}{_GAP})*(?:(?:{_NOT}) {_VERB}|{_DECLINE}"
                       rf"|{_SOMETHING}){_CLAUSE_END}", re.IGNORECASE)
"""A refusal of the request itself, at the start of the response."""
DISCLAIMING = re.compile(
    rf"^(?:{_SORRY}{_GAP})*{_AI}{_GAP}(?:{_SORRY}{_GAP})*(?:{_NOT}|i (?:don't|do not) have"
    rf" (?:the ability|personal|any personal|opinions|feelings|emotions|access)|i(?:'m| am) not"
    rf" (?:able|capable|designed|programmed))\b", re.IGNORECASE)
"""An AI disclaimer opening the response, followed by what the assistant cannot do."""
TURN = re.compile(r"\b(?:but|however|instead|although|though|that said|here(?:'s| is| are))\b",
                  re.IGNORECASE)


@dataclass
class Refusal:
    match: str
    words: int


def builtin_refusal(text: str) -> Refusal | None:
    """The refusal `text` (trimmed, typographic apostrophes made plain) opens with, when it is
    a short boilerplate refusal that does not go on to help; None otherwise."""
    opening = text[:_OPENING_CHARS]
    found = DECLINING.match(opening) or DISCLAIMING.match(opening)
    if found is None:
        return None
    words = len(text.split(None, REFUSAL_MAX_WORDS))
    if words > REFUSAL_MAX_WORDS or TURN.search(text, found.end()):
        return None
    return Refusal(found.group(0), words)
