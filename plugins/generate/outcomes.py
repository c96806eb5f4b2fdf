"""Turns a generate stage's exchanges into outcomes: generated records with their provenance,
rejections of malformed answers with the raw text, and the prompt-only records that a generated
answer replaces."""

from __future__ import annotations

import hashlib

from curate.generation import Draft, GenerationError
from curate.plugins.generate.batch import Exchange
from curate.records import ROLES, Added, Record, Rejection
from curate.runstore import dumps


def generated_id(request_key: str, part: str | int) -> str:
    """Ids of generated records derive from the request key: stable across reruns, and two
    requests that happen to get the same text still make two records. Not from the text: the
    review queue binds each decision to the text it was made on, so a new text under the same
    id (a fresh answer, a changed prompt the request does not hold) waits for review again,
    with its history, and `curate why` follows one id across reruns."""
    return hashlib.sha256(f"{request_key}:{part}".encode()).hexdigest()[:16]


class OutcomeBuilder:
    def __init__(self, strategy, options, stage_name: str):
        self.strategy, self.options, self.stage_name = strategy, options, stage_name
        self.answered: dict[str, str] = {}
        """Input record id -> id of the generated record that replaces it."""

    def outcomes(self, exchange: Exchange) -> list[Added]:
        if exchange.error is not None:
            return [Added(self._malformed(exchange, exchange.error))]
        try:
            drafts = [checked(draft) for draft in
                      self.strategy.parse(exchange.value, exchange.planned.request)]
            if not drafts:
                raise GenerationError("the answer made no records")
        except GenerationError as error:
            return [Added(self._malformed(exchange, str(error)))]
        records = [self._record(exchange, draft, index) for index, draft in enumerate(drafts)]
        if exchange.planned.request.replaces:
            self.answered[exchange.planned.request.replaces] = records[0].id
        return [Added(record) for record in records]

    def replacement(self, record: Record) -> Rejection | None:
        """The rejection of an input record a generated record answered, else None."""
        new_id = self.answered.get(record.id)
        if new_id is None:
            return None
        return Rejection(record, "answered", f"had no response; generated record {new_id}"
                         f" ({self.options.model}) answers it", evidence={"answered_by": new_id})

    def _record(self, exchange: Exchange, draft: Draft, index: int) -> Record:
        key = exchange.planned.key
        meta = {"generation": self._provenance(exchange), "from": f"{self.stage_name} request"
                f" {key[:16]}"}
        return Record(draft.messages, draft.source, "generated", meta, generated_id(key, index))

    def _malformed(self, exchange: Exchange, error: str) -> Rejection:
        key, answer = exchange.planned.key, exchange.answer
        asked = [m for m in exchange.planned.request.messages if m["role"] != "system"]
        record = Record([*asked, {"role": "assistant", "content": answer.content}],
                        self.stage_name, "generated",
                        {"generation": self._provenance(exchange),
                         "from": f"{self.stage_name} request {key[:16]}"},
                        generated_id(key, "malformed"))
        excerpt = answer.content[:80] + ("..." if len(answer.content) > 80 else "")
        tries = f" after {len(exchange.attempts)} attempts" if len(exchange.attempts) > 1 else ""
        return Rejection(record, "malformed-generation", f"{error}{tries}: {excerpt!r}",
                         raw=answer.content,
                         evidence={"error": error, "request_key": key,
                                   "finish_reason": answer.finish_reason,
                                   "attempts": len(exchange.attempts)})

    def _provenance(self, exchange: Exchange) -> dict:
        """Where a record came from. Not when: the answer's time stays in the response cache,
        so two fresh runs against a deterministic server write byte-identical records."""
        answer, planned = exchange.answer, exchange.planned
        provenance = {"model": self.options.model, "strategy": self.strategy.name,
                      "prompt_hash": hashlib.sha256(dumps(planned.messages).encode())
                      .hexdigest()[:16],
                      "seeds": list(planned.request.seeds), "request_key": planned.key,
                      "attempts": len(exchange.attempts)}
        if answer.model and answer.model != self.options.model:
            provenance["served_model"] = answer.model
        return provenance


def checked(draft: Draft) -> Draft:
    """The draft if it makes a training example: known roles, text, a user turn, and a
    non-empty assistant turn last."""
    messages = draft.messages
    if not messages or any(m.get("role") not in ROLES or not isinstance(m.get("content"), str)
                           for m in messages):
        raise GenerationError("a generated record has a message without a known role and text")
    if messages[-1]["role"] != "assistant" or not messages[-1]["content"].strip():
        raise GenerationError("a generated record does not end with a non-empty answer")
    if not any(m["role"] == "user" and m["content"].strip() for m in messages):
        raise GenerationError("a generated record has no user message")
    return draft
