"""The `consistency` rules that judge a record against the rest of its source: a response length
far from the source's usual (a z-score of log lengths), and a system prompt that differs from the
source's most common one."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from curate.plugins.consistency_ledger import Finding, Ledger
from curate.plugins.consistency_text import snippet


def length_findings(ledger: Ledger, options: Any) -> Iterator[tuple[int, Finding]]:
    """Responses whose log length lies over `max_zscore` standard deviations from their source's
    mean: log, because lengths are skewed and one huge response would hide the rest."""
    import numpy as np

    if not options.max_zscore or not len(ledger):
        return
    judged = np.frombuffer(ledger.locally_rejected, dtype=np.int8) == 0
    sources = np.frombuffer(ledger.sources, dtype=np.int64)
    chars = np.frombuffer(ledger.lengths, dtype=np.int64)
    logs = np.log1p(chars)
    count = np.bincount(sources[judged], minlength=len(ledger.source_names))
    mean = np.bincount(sources[judged], logs[judged], len(count)) / np.maximum(count, 1)
    spread = np.bincount(sources[judged], (logs[judged] - mean[sources[judged]]) ** 2, len(count))
    std = np.sqrt(spread / np.maximum(count, 1))
    judged &= (count >= options.min_source_records)[sources] & (std > 1e-9)[sources]
    zscores = np.abs(logs - mean[sources]) / np.where(std > 1e-9, std, 1.0)[sources]
    names = list(ledger.source_names)
    for index in np.flatnonzero(judged & (zscores > options.max_zscore)).tolist():
        source = sources[index]
        yield index, length_outlier(int(chars[index]), float(zscores[index]), names[source],
                                    int(count[source]), math.expm1(mean[source]), options)


def length_outlier(chars: int, zscore: float, source: str, records: int, typical: float,
                   options: Any) -> Finding:
    kind = "long" if chars > typical else "short"
    detail = (f"response is unusually {kind}: {chars:,} characters, log-length z-score"
              f" {zscore:.1f} within source {source!r} (typical {round(typical):,} characters"
              f" over {records:,} records); maximum is {options.max_zscore}")
    return Finding("length-outlier", detail, {
        "rule": "length-outlier", "chars": chars, "zscore": round(zscore, 3),
        "max_zscore": options.max_zscore, "source": source, "source_records": records,
        "typical_chars": round(typical)}, options.on_outlier == "reject")


def system_findings(ledger: Ledger, options: Any) -> Iterator[tuple[int, Finding]]:
    """Records whose system prompt (or its absence) differs from their source's most common one
    (ties: the one seen first)."""
    common: dict[int, tuple[int, int, int]] = {}  # source -> (count, -first index, system)
    totals: dict[int, int] = {}
    for (source, system), (count, first) in ledger.system_counts.items():
        totals[source] = totals.get(source, 0) + count
        common[source] = max(common.get(source, (0, 0, 0)), (count, -first, system))
    if all(count == totals[source] for source, (count, _, _) in common.items()):
        return
    names = list(ledger.source_names)
    for index, (source, system) in enumerate(zip(ledger.sources, ledger.systems)):
        if ledger.locally_rejected[index] or system == common[source][2]:
            continue
        count, first, usual = common[source]
        yield index, Finding("system-prompt-drift", *drift(ledger, index, (usual, -first), (
            count, totals[source], names[source])), options.on_drift == "reject")


def drift(ledger: Ledger, index: int, usual: tuple[int, int], counts: tuple[int, int, str]):
    (system, first), (count, total, source) = usual, counts
    mine, theirs = ledger.system_snippets[ledger.systems[index]], ledger.system_snippets[system]
    detail = (f"system prompt {_shown_system(mine)} differs from {_shown_system(theirs)}, which"
              f" {count:,} of {total:,} records of source {source!r} use"
              f" (e.g. {ledger.ids[first]})")
    return detail, {"rule": "system-prompt-drift", "other_id": ledger.ids[first],
                    "system": mine or None, "other_system": theirs or None,
                    "common_count": count, "source_records": total, "source": source}


def _shown_system(text: str) -> str:
    return repr(snippet(text)) if text else "(none)"
