"""The `generate` stage: asks an OpenAI-compatible endpoint for new records with a generation
strategy, passes every input record through, and adds what the model made as records of
origin "generated" (or rejections of malformed answers), each with its provenance."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from curate.errors import CurateError, RecipeError
from curate.generation import GenerationError, GenerationRequest
from curate.options import OptionError, option, parse_options
from curate.records import Record
from curate.plugins.generate.endpoint import EndpointOptions
from curate.stages import Stage

JSON_INSTRUCTION = ("Reply with one JSON object and nothing else: no code fence, no comments."
                    " It must follow this JSON schema:\n")


@dataclass(kw_only=True)
class GenerateOptions(EndpointOptions):
    strategy: dict[str, Any] = option(help="the strategy table: use = \"self-instruct\","
                                           " \"answer\", \"augment\" or \"template\", and its"
                                           " options")
    temperature: float = option(0.7, min=0.0, max=2.0, help="sampling temperature")
    max_answer_tokens: int = option(1024, min=1, help="longest answer, in tokens")
    malformed_attempts: int = option(1, min=1, max=5, help="tries per request when the answer"
                                                           " is not valid JSON for its schema")
    max_requests: int | None = option(None, min=1, help="send at most this many requests, each"
                                                        " retry after a malformed answer"
                                                        " included (answers from the cache"
                                                        " count too; retries after 429, 5xx"
                                                        " and timeouts do not)")
    max_tokens: int | None = option(None, min=1, help="stop once answers have used this many"
                                                      " tokens, prompt and completion")


class GenerateStage(Stage):
    name = "generate"
    Options = GenerateOptions
    version = "4"  # 4: non-answers are not cached and are asked again; refusals are named
    adds_origin = "generated"

    @classmethod
    def check_options(cls, options: GenerateOptions) -> None:
        # Not check_key(): reviewers and a rerun served from the cache need no API key; the
        # endpoint asks for it when a request must be sent.
        options.check_address()
        if options.max_requests is not None and options.max_requests < options.malformed_attempts:
            raise OptionError("max_requests", f"{options.max_requests} cannot pay for one request"
                              f" asked up to malformed_attempts = {options.malformed_attempts}"
                              f" times: raise it or lower malformed_attempts")
        resolve_strategy(options.strategy)

    @classmethod
    def run_folder_fingerprint(cls, options: GenerateOptions, run_dir) -> list:
        from curate.plugins.generate.sending import unanswered_marker

        marker = unanswered_marker(options, run_dir)
        return ["unanswered requests", marker.read_text()] if marker.exists() else []

    @classmethod
    def fingerprint_extra(cls, options: GenerateOptions) -> list:
        from curate.pluginmanager import get_host

        return get_host().identity("generation strategy", options.strategy["use"])

    def process(self, records):
        from curate.plugins.generate.outcomes import OutcomeBuilder
        from curate.plugins.generate.sending import send

        records = list(records)
        strategy_class, strategy_options = resolve_strategy(self.options.strategy)
        strategy = strategy_class(strategy_options, self.context.name)
        planned = plan_requests(self._requests(strategy, records), self.options,
                                self.context.seed)
        exchanges = send(planned, self.options, self.context)
        builder = OutcomeBuilder(strategy, self.options, self.context.name)
        added = [outcome for exchange in exchanges for outcome in builder.outcomes(exchange)]
        for record in records:
            yield builder.replacement(record) or record
        yield from added

    def _requests(self, strategy, records: list[Record]) -> list[GenerationRequest]:
        rng = random.Random(f"{self.context.seed}:{self.context.name}")
        try:
            return list(strategy.requests(records, rng))
        except GenerationError as error:
            raise CurateError(f"stage '{self.context.name}': strategy '{strategy.name}':"
                              f" {error}") from None


def resolve_strategy(table: dict) -> tuple[type, Any]:
    """The strategy class a recipe's `strategy` table names, and its parsed options; an
    OptionError naming the key (strategy.count) for a mistake."""
    from curate.pluginmanager import get_host

    use = table.get("use")
    if not isinstance(use, str):
        names = ", ".join(get_host().registry("generation strategy").names())
        raise OptionError("strategy.use", f"required key 'use' is missing: name the strategy"
                          f" (one of {names})")
    try:
        strategy = get_host().get("generation strategy", use)
        options = parse_options(strategy.Options, {k: v for k, v in table.items() if k != "use"},
                                "", "")
        strategy.check_options(options)
    except CurateError as error:
        key = f"strategy.{error.key_path}" if isinstance(error, RecipeError) else "strategy.use"
        raise OptionError(key, getattr(error, "message", str(error))) from None
    except OptionError as error:
        raise OptionError(f"strategy.{error.key}", str(error)) from None
    return strategy, options


def plan_requests(requests: list[GenerationRequest], options: GenerateOptions, seed: int):
    """Each request as sent, once: a strategy that asks the same thing twice (two identical
    prompt-only records) gets one answer for both."""
    from curate.plugins.generate.batch import Planned

    planned: dict[str, Planned] = {}
    for request in requests:
        messages = with_json_instruction(request.messages, request.schema)
        temperature = options.temperature if request.temperature is None else request.temperature
        params = {"temperature": temperature, "max_tokens": options.max_answer_tokens,
                  "seed": seed}
        keyed = {"base_url": options.base_url.rstrip("/"), "model": options.model,
                 "messages": messages, "schema": request.schema}
        entry = Planned(request, messages, params, keyed)
        planned.setdefault(entry.key, entry)
    return list(planned.values())


def with_json_instruction(messages: list[dict], schema: dict) -> list[dict]:
    """The messages with one system message first, ending in the instruction to answer in JSON
    that follows `schema` (servers without structured output need it in words)."""
    system = [m["content"] for m in messages if m["role"] == "system" and m["content"].strip()]
    instruction = JSON_INSTRUCTION + json.dumps(schema, sort_keys=True)
    rest = [m for m in messages if m["role"] != "system"]
    return [{"role": "system", "content": "\n\n".join([*system, instruction])}, *rest]
