"""What the quality report says about a run, gathered from its run folder.

Counts (the funnel, rejection reasons, duplicate clusters, consistency findings) are exact.
Distributions (text lengths, languages) are measured on every record of a run of up to
SAMPLE_ROWS records and on evenly spaced row groups beyond that. Examples are the first ones in
file order, so the same run folder always gives the same report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.plugins.report_eval import EvalReport, gather_evaluation
from curate.plugins.report_rehearsal import Rehearsal, gather_rehearsal
from curate.plugins.report_scan import (EXAMPLES, KeptScan, RejectedScan, RowGroups, Sampler,
                                        column)
from curate.runstore import RunFolder

LARGEST_CLUSTERS = 10
SHOWN_REASONS = 50
"""Rejection reasons (and consistency rules) listed, the most frequent across the run; the rest
are summed in one line, so a stage that writes a reason per record keeps the report small."""
CLIPPED_CHARS = 1000
"""Text kept per example; the renderers shorten it further."""
EXAMPLE_COLUMNS = ["id", "detail", "messages", "raw"]


@dataclass
class Example:
    """One record shown in the report, its texts clipped to CLIPPED_CHARS."""

    id: str
    detail: str = ""
    prompt: str = ""
    response: str = ""
    raw: str = ""
    """The unreadable row's text, for rows that never became a record."""
    other_id: str = ""
    other_answer: str = ""


@dataclass
class StepCount:
    index: int
    name: str
    use: str
    rows_in: int
    kept: int
    rejected: int
    reasons: dict[str, int]
    added: int = 0
    """Records the step made rather than received (generated, general ones)."""
    stats: dict = field(default_factory=dict)


@dataclass
class ReasonGroup:
    step: str
    reason: str
    count: int
    examples: list[Example]


@dataclass
class Lengths:
    """Characters per record: {"kept": array, "rejected": array} for prompts and responses."""

    prompt: dict[str, np.ndarray]
    response: dict[str, np.ndarray]
    measured: int
    total: int


@dataclass
class Languages:
    """Kept records per detected language code ("" where the text was not judged)."""

    prompt: dict[str, int]
    response: dict[str, int]
    measured: int
    unlabelled: int
    """Measured records whose meta has no "language" at all."""
    mismatched: int
    sampled: bool


@dataclass
class Cluster:
    step: str
    survivor: Example | None
    survivor_id: str
    size: int
    removed: int
    similarity: tuple[float | None, float | None]


@dataclass
class Duplicates:
    removed: int
    clusters: int
    sizes: dict[int, int]
    """Cluster size (survivor included) -> number of clusters of that size."""
    methods: dict[str, int]
    largest: list[Cluster]


@dataclass
class RuleFindings:
    rule: str
    rejected: int = 0
    flagged: int = 0
    rejected_examples: list[Example] = field(default_factory=list)
    flagged_examples: list[Example] = field(default_factory=list)


@dataclass
class RunReport:
    name: str
    recipe: str
    recipe_sha256: str
    seed: int | None
    sources: list[dict]
    steps: list[StepCount]
    final: dict
    reasons: list[ReasonGroup]
    lengths: Lengths
    languages: Languages | None
    duplicates: Duplicates | None
    consistency: list[RuleFindings]
    evaluation: EvalReport | None = None
    """The trained model's evaluation (plugins/report_eval.py), when the run has one."""
    more_reasons: Remainder | None = None
    """The reasons beyond SHOWN_REASONS, when there are more."""
    more_rules: Remainder | None = None
    """The consistency rules beyond SHOWN_REASONS, when there are more."""
    rehearsal: Rehearsal | None = None


@dataclass
class Remainder:
    """What a capped list leaves out: how many entries, and the records they count."""

    entries: int
    records: int


def gather(run_dir: Path, manifest: dict) -> RunReport:
    steps = [StepCount(s["index"], s["name"], s.get("use", s["name"]), s["in"], s["kept"],
                       s["rejected"], s.get("reasons", {}), s.get("added", 0),
                       s.get("stats") or {})
             for s in manifest["steps"]]
    shown, more_reasons = shown_reasons(steps)
    folders = [RunFolder(run_dir).step_dir(step.index, step.name) for step in steps]
    final = RowGroups(folders[-1] / "kept.parquet")
    rejected = [RowGroups(folder / "rejected.parquet") for folder in folders]
    total = final.rows + sum(groups.rows for groups in rejected)
    sampler = Sampler(total)
    scans = [RejectedScan(groups, step.name, counts, sampler)
             for groups, step, counts in zip(rejected, steps, shown)]
    kept = KeptScan(final, sampler)
    reasons = [group for scan, counts in zip(scans, shown)
               for group in reason_groups(scan, counts)]
    rules, more_rules = capped_rules(consistency(scans, kept))
    recipe = manifest.get("recipe", {})
    return RunReport(recipe.get("name", ""), Path(recipe.get("file", "")).name,
                     recipe.get("sha256", ""), manifest.get("seed"), manifest.get("sources", []),
                     steps, manifest["final"], reasons, lengths(scans, kept, sampler, total),
                     languages(kept, sampler.sampled), duplicates(scans, folders),
                     rules, gather_evaluation(run_dir), more_reasons, more_rules,
                     gather_rehearsal([(step.name, step.stats) for step in steps],
                                      manifest.get("split") or {}))


def shown_reasons(steps: list[StepCount]) -> tuple[list[dict[str, int]], Remainder | None]:
    """Per step, the reasons among the SHOWN_REASONS most frequent of the run (ties by step,
    then reason), and what the others add up to."""
    ranked = sorted(((-count, index, reason) for index, step in enumerate(steps)
                     for reason, count in step.reasons.items()))
    shown: list[dict[str, int]] = [{} for _ in steps]
    for negative, index, reason in ranked[:SHOWN_REASONS]:
        shown[index][reason] = -negative
    rest = ranked[SHOWN_REASONS:]
    return shown, Remainder(len(rest), -sum(item[0] for item in rest)) if rest else None


def capped_rules(rules: list[RuleFindings]) -> tuple[list[RuleFindings], Remainder | None]:
    """The SHOWN_REASONS rules with the most findings, in rule order, and the rest summed."""
    if len(rules) <= SHOWN_REASONS:
        return rules, None
    ranked = sorted(rules, key=lambda f: (-(f.rejected + f.flagged), f.rule))
    rest = ranked[SHOWN_REASONS:]
    return (sorted(ranked[:SHOWN_REASONS], key=lambda f: f.rule),
            Remainder(len(rest), sum(f.rejected + f.flagged for f in rest)))


def reason_groups(scan: RejectedScan, counts: dict[str, int]) -> list[ReasonGroup]:
    """The step's reasons, most frequent first, each with its first rows as examples."""
    wanted = [p for positions in scan.example_rows.values() for p in positions]
    rows = scan.groups.rows_at(wanted, EXAMPLE_COLUMNS)
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [ReasonGroup(scan.step, reason, count,
                        [example_from(rows[p]) for p in scan.example_rows.get(reason, [])])
            for reason, count in ordered]


def lengths(scans: list[RejectedScan], kept: KeptScan, sampler: Sampler, total: int) -> Lengths:
    def rejected(part: str) -> np.ndarray:
        arrays = [getattr(scan, f"{part}_lengths") for scan in scans]
        return np.concatenate(arrays) if arrays else np.zeros(0, np.int64)

    return Lengths({"kept": kept.prompt_lengths, "rejected": rejected("prompt")},
                   {"kept": kept.response_lengths, "rejected": rejected("response")},
                   sampler.measured, total)


def languages(kept: KeptScan, sampled: bool) -> Languages | None:
    if kept.language_rows.num_rows == 0:
        return None
    judged = column(kept.language_rows, "language")
    prompt, response = pc.struct_field(judged, [0, 0]), pc.struct_field(judged, [1, 0])
    mismatched = pc.sum(pc.not_equal(prompt, response)).as_py() or 0
    return Languages(_counts(prompt), _counts(response), kept.measured,
                     kept.measured - len(judged), mismatched, sampled)


def duplicates(scans: list[RejectedScan], folders: list[Path]) -> Duplicates | None:
    tables = [(scan, scan.duplicate_rows()) for scan in scans]
    tables = [(scan, table) for scan, table in tables if table.num_rows]
    if not tables:
        return None
    clusters = pa.concat_tables([_clusters(table, scan.step) for scan, table in tables])
    methods = pa.concat_arrays([column(table, "method") for _, table in tables])
    order = pc.sort_indices(clusters, [("size", "descending"), ("step", "ascending"),
                                       ("first", "ascending")])
    largest = clusters.take(order[:LARGEST_CLUSTERS]).to_pylist()
    survivors = _survivors(largest, dict(zip((scan.step for scan in scans), folders)))
    return Duplicates(sum(table.num_rows for _, table in tables), clusters.num_rows,
                      dict(sorted(_counts(clusters["size"].combine_chunks()).items())),
                      _counts(methods), [_cluster(row, survivors) for row in largest])


def _clusters(duplicates: pa.Table, step: str) -> pa.Table:
    """One row per survivor: its duplicates' count, first position, similarity range, size."""
    grouped = duplicates.group_by("duplicate_of").aggregate([
        ("position", "min"), ("position", "count"), ("similarity", "min"),
        ("similarity", "max"), ("cluster_size", "max")])
    counted = grouped["position_count"].combine_chunks()
    stated = pc.fill_null(grouped["cluster_size_max"].combine_chunks(), 0)
    size = pc.max_element_wise(pc.add(counted, 1), stated)
    # Table.from_arrays: pa.table() would import pandas to check for a DataFrame.
    return pa.Table.from_arrays(
        [pa.array([step] * len(counted), pa.string()), grouped["duplicate_of"],
         grouped["position_min"], counted, grouped["similarity_min"], grouped["similarity_max"],
         size], ["step", "survivor", "first", "removed", "low", "high", "size"])


def _survivors(clusters: list[dict], folders: dict[str, Path]) -> dict[tuple[str, str], Example]:
    """The survivors of these clusters, looked up in their step's kept records."""
    found = {}
    for step in sorted({cluster["step"] for cluster in clusters}):
        groups = RowGroups(folders[step] / "kept.parquet")
        wanted = pa.array([c["survivor"] for c in clusters if c["step"] == step], pa.string())
        positions = []
        for group in range(len(groups)):
            ids = column(groups.read(group, ["id"]), "id")
            hits = pc.indices_nonzero(pc.is_in(ids, value_set=wanted)).to_pylist()
            positions += [groups.starts[group] + hit for hit in hits]
        for row in groups.rows_at(positions, ["id", "messages"]).values():
            found.setdefault((step, row["id"]), example_from(row))
    return found


def _cluster(row: dict, survivors: dict[tuple[str, str], Example]) -> Cluster:
    return Cluster(row["step"], survivors.get((row["step"], row["survivor"])), row["survivor"],
                   row["size"], row["removed"], (row["low"], row["high"]))


def consistency(scans: list[RejectedScan], kept: KeptScan) -> list[RuleFindings]:
    """Findings per rule: rejected rows whose evidence names a rule, and kept records'
    meta["consistency"] flags, each with its first EXAMPLES rows."""
    rules: dict[str, RuleFindings] = {}
    for scan in scans:
        rows = scan.rule_rows()
        for row in rows:
            rules.setdefault(row["rule"], RuleFindings(row["rule"])).rejected += 1
        noted = _first_per_key(rows, lambda row: row["rule"])
        records = scan.groups.rows_at([row["position"] for row in noted], EXAMPLE_COLUMNS)
        for row in noted:
            examples = rules[row["rule"]].rejected_examples
            if len(examples) < EXAMPLES:
                examples.append(_finding(records[row["position"]], row))
    _add_flags(rules, kept)
    return [rules[rule] for rule in sorted(rules)]


def _add_flags(rules: dict[str, RuleFindings], kept: KeptScan) -> None:
    flags = kept.flagged()
    for _, flag in flags:
        rule = _rule(flag)
        rules.setdefault(rule, RuleFindings(rule)).flagged += 1
    noted = _first_per_key(flags, lambda item: _rule(item[1]))
    records = kept.groups.rows_at([position for position, _ in noted], ["id", "messages"])
    for position, flag in noted:
        rules[_rule(flag)].flagged_examples.append(_finding(records[position], flag or {}))


def _rule(flag: dict | None) -> str:
    return (flag or {}).get("rule") or "(no rule named)"


def _first_per_key(items: list, key) -> list:
    """The first EXAMPLES items of each key, in order."""
    seen: dict = {}
    chosen = []
    for item in items:
        seen[key(item)] = seen.get(key(item), 0) + 1
        if seen[key(item)] <= EXAMPLES:
            chosen.append(item)
    return chosen


def _finding(record: dict, finding: dict) -> Example:
    example = example_from(record)
    example.detail = finding.get("detail") or example.detail
    example.other_id = finding.get("other_id") or ""
    example.other_answer = clipped(finding.get("other_answer"))
    return example


def example_from(row: dict) -> Example:
    messages = row.get("messages")
    return Example(row["id"], row.get("detail") or "", clipped(joined(messages, "user")),
                   clipped(joined(messages, "assistant")),
                   clipped((row.get("raw") or "").rstrip("\r\n")))


def joined(messages: list[dict] | None, role: str) -> str:
    return "\n\n".join(m["content"] or "" for m in messages or [] if m["role"] == role)


def clipped(text: str | None) -> str:
    text = text or ""
    return text if len(text) <= CLIPPED_CHARS else text[:CLIPPED_CHARS] + "…"


def _counts(values: pa.Array) -> dict:
    """value -> count, most frequent first; nulls and empty strings counted under ""."""
    counted: dict = {}
    for row in pc.value_counts(values).to_pylist():
        key = "" if row["values"] is None else row["values"]
        counted[key] = counted.get(key, 0) + row["counts"]
    return dict(sorted(counted.items(), key=lambda item: (-item[1], str(item[0]))))
