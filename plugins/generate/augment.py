"""The `augment` strategy: paraphrases of the prompts of under-represented sources or labels,
each paired with the original response, until every group holds at least `min_share` of the
records."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from curate.generation import Draft, GenerationRequest, GenerationStrategy, object_schema
from curate.options import OptionError, option
from curate.records import Record

INSTRUCTION = ("Paraphrase the user's instruction: keep its meaning, its language and every"
               " detail an answer depends on; change the wording and sentence structure.")


@dataclass
class AugmentOptions:
    by: Literal["source", "label"] = option("source", help="what a group is: a source, or a"
                                                           " label read from the response")
    label_pattern: str | None = option(None, help="with by = 'label': a regex whose first group"
                                                  " is the label (default: the whole trimmed"
                                                  " response)")
    min_share: float = option(0.2, min=0.0, max=1.0, help="groups below this share of the"
                                                          " records get paraphrases")
    max_records: int = option(100, min=1, help="at most this many paraphrases in all")


class AugmentPrompts(GenerationStrategy):
    name = "augment"
    Options = AugmentOptions
    version = "1"

    @classmethod
    def check_options(cls, options: AugmentOptions) -> None:
        if options.label_pattern is None:
            return
        if options.by != "label":
            raise OptionError("label_pattern", "label_pattern needs by = \"label\"")
        try:
            pattern = re.compile(options.label_pattern)
        except re.error as error:
            raise OptionError("label_pattern", f"not a valid regex: {error}") from None
        if pattern.groups < 1:
            raise OptionError("label_pattern", "the regex needs a group: the label, e.g."
                                               " \"^(positive|negative)\"")

    def requests(self, records: list[Record], rng: random.Random) -> Iterator[GenerationRequest]:
        candidates = [r for r in records if r.origin != "generated" and r.response.strip()
                      and sum(m["role"] == "user" for m in r.messages) == 1]
        groups: dict[str, list[Record]] = {}
        for record in candidates:
            groups.setdefault(self._group(record), []).append(record)
        budget = self.options.max_records
        target = math.ceil(self.options.min_share * len(candidates))
        for name in sorted(groups, key=lambda g: (len(groups[g]), g)):
            wanted = min(max(target - len(groups[name]), 0), budget)
            budget -= wanted
            yield from self._group_requests(groups[name], name, wanted, rng)

    def parse(self, answer: dict, request: GenerationRequest) -> list[Draft]:
        record: Record = request.context["record"]
        drafts = []
        for paraphrase in answer["paraphrases"][: request.context["asked"]]:
            messages = [{**m, "content": paraphrase.strip()} if m["role"] == "user" else m
                        for m in record.messages]
            drafts.append(Draft(messages, record.source))
        return drafts

    def _group_requests(self, group: list[Record], name: str, wanted: int,
                        rng: random.Random) -> Iterator[GenerationRequest]:
        if not wanted:
            return
        shuffled = rng.sample(group, len(group))
        share, extra = divmod(wanted, len(shuffled))
        for index, record in enumerate(shuffled):
            asked = share + (index < extra)
            if asked:
                yield self._request(record, name, asked)

    def _request(self, record: Record, group: str, asked: int) -> GenerationRequest:
        schema = object_schema(paraphrases={"type": "array", "minItems": 1, "maxItems": asked,
                                            "items": {"type": "string", "minLength": 1}})
        plural = "one paraphrase" if asked == 1 else f"{asked} different paraphrases"
        ask = f"Write {plural} of this instruction:\n\n{record.prompt}"
        return GenerationRequest(
            [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": ask}],
            schema=schema, seeds=(record.id,),
            context={"record": record, "asked": asked, "group": group})

    def _group(self, record: Record) -> str:
        if self.options.by == "source":
            return record.source
        response = record.response.strip()
        if self.options.label_pattern is None:
            return response
        match = re.search(self.options.label_pattern, response)
        return match.group(1) if match else response
