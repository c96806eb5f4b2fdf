"""Sends a generate stage's planned requests and says how far it got."""

from __future__ import annotations

from pathlib import Path

from curate.errors import CurateError
from curate.plugins.generate.batch import Budget, Exchange, Planned, RequestBatch
from curate.plugins.generate.cache import ResponseCache
from curate.stages import StageContext


def cache_path(context: StageContext) -> Path:
    """`<run dir>/cache/generate.sqlite`: shared by every generate stage of the run folder,
    kept by --force, so no answer is paid for twice."""
    base = context.run_dir if context.run_dir is not None else context.work_dir
    return base / "cache" / "generate.sqlite"


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
    context.log(summary(name, planned, exchanges, budget, endpoint.resent))
    return exchanges


def summary(name: str, planned: list[Planned], exchanges: list[Exchange], budget: Budget,
            resent: int = 0) -> str:
    requests = sum(len(exchange.attempts) for exchange in exchanges)
    cached = sum(exchange.cached for exchange in exchanges)
    malformed = sum(exchange.error is not None for exchange in exchanges)
    line = (f"{name}: {requests:,} requests ({cached:,} answered from the cache),"
            f" {budget.tokens:,} tokens, {malformed:,} malformed answers")
    if resent:
        line += f", {resent:,} sent again after 429/5xx/timeouts (not counted in max_requests)"
    reached = budget.reached()
    if reached and len(exchanges) < len(planned):
        line += (f"; stopped at {reached}: {len(exchanges):,} of {len(planned):,} planned"
                 f" requests done, {len(planned) - len(exchanges):,} not sent (raise it and run"
                 f" again to continue; answers so far are cached)")
    return line
