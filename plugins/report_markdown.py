"""The quality report as Markdown, for terminals and pull requests; and `visible`, which both
renderers use to show text from the data safely: shortened, on one line, with control, invisible
and direction-changing characters spelled out."""

from __future__ import annotations

import re

import numpy as np

from curate.plugins.report_data import Example, RunReport
from curate.plugins.report_scan import EXAMPLES

HIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u2028-\u202e\u2060-\u2064\u2066-\u2069"
                    "\ufeff\ufff9-\ufffb\ud800-\udfff]")
"""Controls, zero-width spaces, line separators, bidirectional overrides and isolates, byte
order marks and lone surrogates: shown as ⟨U+XXXX⟩ so nothing hides or reorders the text."""
MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&])")
TEXT_CHARS = 80


def visible(text: str | None, limit: int | None = None) -> str:
    """`text` shortened to `limit` characters, its line breaks as ↵ and hidden characters
    spelled out."""
    text = text or ""
    if limit is not None and len(text) > limit:
        text = text[:limit - 1] + "…"
    text = re.sub(r"[ \t]*\r?\n[ \t]*", " ↵ ", text).replace("↵  ↵", "↵ ↵").replace("\t", " ")
    return HIDDEN.sub(lambda match: f"⟨U+{ord(match.group()):04X}⟩", text)


def md(text: str | None, limit: int | None = None) -> str:
    """Text from the data, safe inside a Markdown paragraph, list item or table cell."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", visible(text, limit))


def render_markdown(report: RunReport) -> str:
    sections = [_heading(report), _funnel(report), _reasons(report), _lengths(report),
                _languages(report), _duplicates(report), _consistency(report)]
    return "\n\n".join(section for section in sections if section) + "\n"


def _heading(report: RunReport) -> str:
    final = report.final
    seed = "" if report.seed is None else f", seed {report.seed}"
    rejected = _percent(final["rejected"], final["input"])
    return (f"# Quality report: {md(report.name or 'run')}\n\n"
            f"Recipe {md(report.recipe)} (sha256 {md(report.recipe_sha256[:12])}){seed}."
            f" {final['input']:,} input rows → {final['train']:,} train + {final['eval']:,}"
            f" eval; {final['rejected']:,} rejected ({rejected}).")


def _funnel(report: RunReport) -> str:
    rows = [[f"{s.index:02d}", md(s.name), f"{s.rows_in:,}", f"{s.kept:,}", f"{s.rejected:,}",
             _percent(s.kept, s.rows_in)] for s in report.steps]
    final = report.final
    rows.append(["", "dataset", f"{final['train'] + final['eval']:,}",
                 f"{final['train']:,} train", f"{final['eval']:,} eval", ""])
    return "## Funnel\n\n" + table(["step", "name", "in", "kept", "rejected", "kept %"], rows,
                                   "--:|:--|--:|--:|--:|--:")


def _reasons(report: RunReport) -> str:
    if not report.reasons:
        return "## Rejection reasons\n\nNothing was rejected."
    inputs = {step.name: step.rows_in for step in report.steps}
    counts = [[md(g.step), md(g.reason), f"{g.count:,}", _percent(g.count, inputs.get(g.step, 0))]
              for g in report.reasons]
    examples = [[md(g.step), md(g.reason), code(e.id), md(e.detail, TEXT_CHARS), example_text(e)]
                for g in report.reasons for e in g.examples]
    return ("## Rejection reasons\n\n"
            + table(["step", "reason", "rejected", "of step input"], counts, ":--|:--|--:|--:")
            + f"\n\nThe first {EXAMPLES} rejections of each reason:\n\n"
            + table(["step", "reason", "id", "detail", "text"], examples))


def _lengths(report: RunReport) -> str:
    lengths = report.lengths
    rows = [[f"{part}, {group}", *percentiles(values)]
            for part, groups in (("response", lengths.response), ("prompt", lengths.prompt))
            for group, values in groups.items()]
    note = sample_note(lengths.measured, lengths.total)
    return ("## Lengths in characters\n\n"
            + table(["text", "records", "min", "median", "90th percentile", "max"], rows,
                    ":--|--:|--:|--:|--:|--:") + (f"\n\n{note}" if note else ""))


def _languages(report: RunReport) -> str:
    languages = report.languages
    if languages is None:
        return ""
    codes = sorted(set(languages.prompt) | set(languages.response),
                   key=lambda code: (code == "", -languages.prompt.get(code, 0), code))
    rows = [[md(code) if code else "not judged",
             _count(languages.prompt.get(code, 0), languages.measured),
             _count(languages.response.get(code, 0), languages.measured)] for code in codes]
    if languages.unlabelled:
        rows.append(["no language recorded", _count(languages.unlabelled, languages.measured),
                     _count(languages.unlabelled, languages.measured)])
    notes = [f"Prompt and response languages differ in {languages.mismatched:,} kept records."]
    if languages.sampled:
        notes.append(f"Measured on a sample of {languages.measured:,} kept records.")
    return ("## Languages of kept records\n\n"
            + table(["language", "prompts", "responses"], rows, ":--|--:|--:")
            + "\n\n" + " ".join(notes))


def _duplicates(report: RunReport) -> str:
    duplicates = report.duplicates
    if duplicates is None:
        return ""
    methods = ", ".join(f"{md(name) or 'unspecified'} {count:,}"
                        for name, count in duplicates.methods.items())
    sizes = ", ".join(f"{size}: {count:,}" for size, count in duplicates.sizes.items())
    rows = [[str(c.size), md(c.step), code(c.survivor_id), similarity_range(c.similarity),
             md(c.survivor.prompt, TEXT_CHARS) if c.survivor else "(not among this step's"
             " kept records)"] for c in duplicates.largest]
    return (f"## Duplicates\n\n{duplicates.removed:,} duplicates removed in"
            f" {duplicates.clusters:,} clusters (by method: {methods}).\n\n"
            f"Clusters by size (survivor included): {sizes}.\n\nLargest clusters:\n\n"
            + table(["size", "step", "survivor", "similarity", "survivor's prompt"], rows,
                    "--:|:--|:--|:--|:--"))


def _consistency(report: RunReport) -> str:
    if not report.consistency:
        return ""
    counts = [[md(f.rule), f"{f.rejected:,}", f"{f.flagged:,}"] for f in report.consistency]
    examples = [[md(f.rule), outcome, code(e.id), md(e.detail, TEXT_CHARS), code(e.other_id),
                 md(e.other_answer, TEXT_CHARS), example_text(e)]
                for f in report.consistency
                for outcome, found in (("rejected", f.rejected_examples),
                                       ("flagged", f.flagged_examples)) for e in found]
    return ("## Consistency findings\n\n"
            + table(["rule", "rejected", "kept, flagged"], counts, ":--|--:|--:") + "\n\n"
            + table(["rule", "outcome", "id", "detail", "other record", "other answer",
                     "text"], examples))


def table(header: list[str], rows: list[list[str]], align: str = "") -> str:
    rule = f"|{align}|" if align else "|" + "|".join(":--" for _ in header) + "|"
    lines = ["| " + " | ".join(header) + " |", rule]
    lines += ["| " + " | ".join(cell or " " for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def code(text: str) -> str:
    """An id as inline code, or escaped text when it could break out of the code span."""
    if not text:
        return ""
    return f"`{text}`" if re.fullmatch(r"[\w.:/-]+", text) else md(text)


def example_text(example: Example) -> str:
    if example.raw and not (example.prompt or example.response):
        return "raw: " + md(example.raw, TEXT_CHARS)
    return (f"prompt: {md(example.prompt, TEXT_CHARS)} → response:"
            f" {md(example.response, TEXT_CHARS)}")


def percentiles(values: np.ndarray) -> list[str]:
    if not len(values):
        return ["0", "", "", "", ""]
    low, median, high, top = np.percentile(values, [0, 50, 90, 100], method="lower")
    return [f"{len(values):,}", f"{low:,}", f"{median:,}", f"{high:,}", f"{top:,}"]


def sample_note(measured: int, total: int) -> str:
    if measured >= total:
        return ""
    return (f"Measured on a sample of {measured:,} of {total:,} records (evenly spaced blocks of"
            f" the run folder's files).")


def similarity_range(bounds: tuple[float | None, float | None]) -> str:
    low, high = bounds
    if low is None:
        return ""
    return f"{low:.2f}" if high is None or f"{low:.2f}" == f"{high:.2f}" else (
        f"{low:.2f}–{high:.2f}")


def _count(count: int, total: int) -> str:
    return f"{count:,} ({_percent(count, total)})"


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "–"
