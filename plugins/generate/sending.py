"""Sends a generate stage's planned requests and says how far it got."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from curate.errors import CurateError
from curate.options import options_to_dict
from curate.plugins.generate.batch import Budget, Exchange, Planned, RequestBatch
from curate.plugins.generate.cache import ResponseCache
from curate.plugins.generate.endpoint import FORMATS
from curate.runstore import dumps
from curate.stages import StageContext


def cache_path(context: StageContext) -> Path:
    """`<run dir>/cache/generate.sqlite`: shared by every generate stage of the run folder,
    kept by --force, so no answer is paid for twice."""
    base = context.run_dir if context.run_dir is not None else context.work_dir
    return base / "cache" / "generate.sqlite"


def unanswered_marker(options, run_dir: Path) -> Path:
    """A file whose content changes each time the stage with these options ends with requests
    the server did not answer: part of the stage's fingerprint, so the next run runs the stage
    again (answers come from the cache) and asks those requests again."""
    digest = hashlib.sha256(dumps(options_to_dict(options)).encode()).hexdigest()[:16]
    return run_dir / "cache" / f"generate-unanswered-{digest}"


def send(planned: list[Planned], options, context: StageContext) -> list[Exchange]:
    name = context.name
    if not planned:
        context.log(f"{name}: the strategy asked for nothing; records pass through unchanged")
        return []
    endpoint = options.endpoint()
    cache = ResponseCache(cache_path(context))
    budget = Budget(options.max_requests, options.max_tokens, options.malformed_attempts)
    batch = RequestBatch(endpoint, cache, budget, options.concurrency, options.malformed_attempts)
    try:
        exchanges = batch.run(planned)
    except CurateError as error:
        kept = (f" ({len(cache):,} answers are cached in {cache.path}: running again reuses"
                f" them)" if len(cache) else "")
        raise CurateError(f"stage '{name}': {error}{kept}") from None
    finally:
        cache.close()
    if any(exchange.failed for exchange in exchanges) and context.run_dir is not None:
        unanswered_marker(options, context.run_dir).write_text(uuid.uuid4().hex)
    if exchanges and all(exchange.failed for exchange in exchanges):
        raise CurateError(f"stage '{name}': every request failed; the first:"
                          f" {exchanges[0].error}")
    context.log(summary(name, planned, exchanges, budget, endpoint.resent,
                        endpoint.response_format))
    return exchanges


def summary(name: str, planned: list[Planned], exchanges: list[Exchange], budget: Budget,
            resent: int = 0, response_format: str = FORMATS[0]) -> str:
    requests = sum(len(exchange.attempts) for exchange in exchanges)
    cached = sum(exchange.cached for exchange in exchanges)
    failed = sum(exchange.failed for exchange in exchanges)
    malformed = sum(exchange.error is not None for exchange in exchanges) - failed
    line = (f"{name}: {requests:,} requests ({cached:,} answered from the cache),"
            f" {budget.tokens:,} tokens, {malformed:,} malformed answers")
    if failed:
        line += f", {failed:,} unanswered (rejected, not cached: the next run asks again)"
    if resent:
        line += f", {resent:,} sent again after 429/5xx/timeouts (not counted in max_requests)"
    if response_format != FORMATS[0]:
        line += f", the server refused {FORMATS[0]}: asked with response_format {response_format}"
    reached = budget.reached()
    if reached and len(exchanges) < len(planned):
        line += (f"; stopped at {reached}: {len(exchanges):,} of {len(planned):,} planned"
                 f" requests done, {len(planned) - len(exchanges):,} not sent (raise it and run"
                 f" again to continue; answers so far are cached)")
    return line
