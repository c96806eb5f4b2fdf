"""The quality report as Markdown, for terminals and pull requests; and `visible`, which both
renderers use to show text from the data safely: shortened, on one line, with control, invisible
and direction-changing characters spelled out."""

from __future__ import annotations

import re

import numpy as np

from curate.plugins.report_data import Example, Remainder, RunReport, StepCount
from curate.plugins.report_data import SHOWN_REASONS
from curate.plugins.report_scan import EXAMPLES

HIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u2028-\u202e"
                    "\u2060-\u2064\u2066-\u2069\ufeff\ufff9-\ufffb\ud800-\udfff]")
"""Controls, zero-width spaces, line separators, direction marks (U+200E, U+200F, U+061C),
bidirectional overrides and isolates, byte order marks and lone surrogates: shown as ⟨U+XXXX⟩
so nothing hides or reorders the text."""
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
    sections = [_heading(report), _funnel(report), _rehearsal(report), _reasons(report),
                _lengths(report), _languages(report), _duplicates(report), _consistency(report),
                _evaluation(report)]
    return "\n\n".join(section for section in sections if section) + "\n"


def _heading(report: RunReport) -> str:
    final = report.final
    seed = "" if report.seed is None else f", seed {report.seed}"
    rejected = percent(final["rejected"], final["input"] + final.get("added", 0))
    return (f"# Quality report: {md(report.name or 'run')}\n\n"
            f"Recipe {md(report.recipe)} (sha256 {md(report.recipe_sha256[:12])}){seed}."
            f" {final['input']:,} input rows{added_note(final)} → {final['train']:,} train +"
            f" {final['eval']:,} eval{general_eval_note(final)}; {final['rejected']:,} rejected"
            f" ({rejected}).")


def added_note(final: dict) -> str:
    """" + 50 added" when stages added records (generated, general ones), else ""."""
    return f" + {final['added']:,} added" if final.get("added") else ""


def general_eval_note(final: dict) -> str:
    return f" + {final['general_eval']:,} general eval" if final.get("general_eval") else ""


def _funnel(report: RunReport) -> str:
    """Per step: records in, added (a column only when a step added some), kept, rejected, and
    the kept share of all the step had, in + added; then the dataset the last step's records
    made."""
    with_added = any(s.added for s in report.steps)
    header = ["step", "name", "in", *(["added"] if with_added else []), "kept", "rejected",
              "kept %"]
    rows = [_step_cells(step, with_added) for step in report.steps]
    align = "|".join(["--:", ":--", *["--:"] * (len(header) - 2)])
    return "## Funnel\n\n" + table(header, rows, align) + "\n\n" + dataset_line(report.final)


def dataset_line(final: dict) -> str:
    """The split of the kept records, and their share of every input row and added record."""
    had, total = final["input"] + final.get("added", 0), dataset_total(final)
    added = " and added records" if final.get("added") else ""
    return (f"Dataset: {total:,} records, {final['train']:,} train + {final['eval']:,} eval"
            f"{general_eval_note(final)}: {percent(total, had)} of the {had:,} input rows{added}.")


def _step_cells(step: StepCount, with_added: bool) -> list[str]:
    added = [f"+{step.added:,}" if step.added else ""] if with_added else []
    return [f"{step.index:02d}", md(step.name), f"{step.rows_in:,}", *added, f"{step.kept:,}",
            f"{step.rejected:,}", percent(step.kept, step.rows_in + step.added)]


def dataset_total(final: dict) -> int:
    return final["train"] + final["eval"] + final.get("general_eval", 0)


def _reasons(report: RunReport) -> str:
    if not report.reasons:
        return "## Rejection reasons\n\nNothing was rejected."
    inputs = step_inputs(report)
    counts = [[md(g.step), md(g.reason), f"{g.count:,}", percent(g.count, inputs.get(g.step, 0))]
              for g in report.reasons]
    examples = [[md(g.step), md(g.reason), code(e.id), md(e.detail, TEXT_CHARS), example_text(e)]
                for g in report.reasons for e in g.examples]
    more = report.more_reasons
    return ("## Rejection reasons\n\n"
            + table(["step", "reason", "rejected", "of step input"], counts, ":--|:--|--:|--:")
            + (f"\n\n{more_reasons_note(more)}" if more else "")
            + f"\n\nThe first {EXAMPLES} rejections of each reason:\n\n"
            + table(["step", "reason", "id", "detail", "text"], examples))


def step_inputs(report: RunReport) -> dict[str, int]:
    """What each step had, in + added: the base of its reasons' shares."""
    return {step.name: step.rows_in + step.added for step in report.steps}


def more_reasons_note(more: Remainder) -> str:
    return (f"And {more.entries:,} more reasons ({more.records:,} records), none more frequent"
            f" than the {SHOWN_REASONS} above: each step's rejected.parquet has them all (column"
            f" reason), and `curate why RUN_DIR ID` explains one record.")


def more_rules_note(more: Remainder) -> str:
    return (f"And {more.entries:,} more rules ({more.records:,} findings), none with more"
            f" findings than the {SHOWN_REASONS} above: each step's rejected.parquet (column"
            f" evidence) and the kept records' meta have them all.")


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
    more = report.more_rules
    return ("## Consistency findings\n\n"
            + table(["rule", "rejected", "kept, flagged"], counts, ":--|--:|--:")
            + (f"\n\n{more_rules_note(more)}" if more else "") + "\n\n"
            + table(["rule", "outcome", "id", "detail", "other record", "other answer",
                     "text"], examples))


def _rehearsal(report: RunReport) -> str:
    from curate.plugins.report_rehearsal import markdown_section  # it uses this module's helpers

    return markdown_section(report.rehearsal)


def _evaluation(report: RunReport) -> str:
    from curate.plugins.report_eval import markdown_section  # it uses this module's helpers

    return markdown_section(report.evaluation)


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
    return f"{count:,} ({percent(count, total)})"


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "–"
