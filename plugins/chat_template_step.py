"""The `chat-template` stage, which the runner adds after the recipe's stages when the recipe
has a [model]: renders every record with the training template and rejects the ones that
cannot be trained on, instead of letting them train as silent zero-loss rows.

Reasons: `template-error` (the template refuses the conversation, e.g. a system message for
Gemma 2), `special-token-in-text` (a message spells a control token such as `<|im_end|>`),
`empty-answer`, `no-trainable-tokens` (nothing trained is left after truncation at max_length),
`untrained-end-of-turn`, `final-answer-truncated` (max_length ends before the final answer),
`end-of-turn-truncated`. Kept records get `meta.tokens` = {total, trained, truncated}; the
step's summary in manifest.json counts the truncated examples and those losing whole replies.
"""

from __future__ import annotations

import os
from pathlib import Path

from curate import hookimpl
from curate.pluginmanager import get_host
from curate.records import Record
from curate.stages import Filter, Reject
from curate.example_checks import ExampleJudge, TokenStats
from curate.template_checks import raise_errors, template_findings
from curate.template_step import (TEMPLATE_STEP, TemplateStepOptions, load_template,
                                  template_fingerprint, template_record)


@hookimpl
def register_stages(register):
    register(ChatTemplateStep)


class ChatTemplateStep(Filter):
    name = TEMPLATE_STEP
    Options = TemplateStepOptions
    version = "6"  # 6: records the template and tokenizer it used, which the trainer checks
    # 5: control tokens spelled in text, final answers cut off entirely rejected
    parallel = True

    @classmethod
    def fingerprint_extra(cls, options: TemplateStepOptions) -> list:
        return template_fingerprint(options, get_host().registry("chat template"))

    def __init__(self, options: TemplateStepOptions, context):
        super().__init__(options, context)
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # workers are forked
        tokenizer, selection = load_template(options, Path(options.recipe_dir),
                                             get_host().registry("chat template"))
        findings = template_findings(tokenizer, selection)
        raise_errors(findings)
        context.log(f"{'':<24} chat template {selection.label}: {selection.how}")
        for finding in findings:
            if finding.level == "warning":
                context.log(f"warning: {finding.message}\n{finding.detail}".rstrip())
        self.judge_example = ExampleJudge(tokenizer, selection, options.max_length)
        self.stats = TokenStats()
        self.used = template_record(selection.label, selection.text, tokenizer)

    def check_batch(self, records: list[Record]) -> list[Reject | None]:
        judged = self.judge_example.judge_many([record.messages for record in records])
        for record, (_, counts) in zip(records, judged):
            if counts:
                record.meta["tokens"] = counts
        return [verdict for verdict, _ in judged]

    def process(self, records):
        # Records come back from the worker processes; their token counts are added up here.
        for outcome in super().process(records):
            record = outcome if isinstance(outcome, Record) else outcome.record
            if record is not None and "tokens" in record.meta:
                tokens = record.meta["tokens"]
                self.stats.add(tokens["total"], self.options.max_length,
                               tokens.get("replies_lost", 0))
            yield outcome
        self.context.log(f"{'':<24} {self.stats.describe(self.options.max_length)}")

    def summary(self) -> dict:
        return {"max_length": self.options.max_length, **vars(self.stats),
                "template": self.used}
