"""The quality report as one self-contained HTML page: inline CSS and SVG charts, no scripts
(its Content-Security-Policy forbids them), no external files. Everything from the data passes
through `h`, which escapes it after `visible` has spelled out hidden characters."""

from __future__ import annotations

from html import escape

from curate.plugins.report_charts import bar_chart, column_chart, length_bins
from curate.plugins.report_data import Example, RunReport, StepCount
from curate.plugins.report_markdown import (added_note, dataset_line, general_eval_note,
                                            more_reasons_note, more_rules_note, percent,
                                            percentiles, sample_note, similarity_range,
                                            step_inputs, visible)
from curate.plugins.report_scan import EXAMPLES

TEXT_CHARS = 300
SHORT_CHARS = 160
"""For the many-column tables of consistency findings."""
KEPT, REJECTED, TRAIN, EVAL = "#3b7d4f", "#c8553d", "#2f6690", "#81c3d7"
GENERAL_EVAL = "#b8b08d"
PROMPT, RESPONSE = "#6c5b7b", "#e8a87c"
CLUSTER_SIZES = ((2, 2), (3, 3), (4, 4), (5, 5), (6, 10), (11, 20), (21, 50), (51, 100),
                 (101, None))
CELL_CLASSES = {"n": ' class="n"', "t": ' class="t"'}
STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem;
color:#222;line-height:1.4}
h1{font-size:1.6rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd}h3{font-size:1rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;vertical-align:top;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
td.t{unicode-bidi:plaintext;max-width:28rem;overflow-wrap:anywhere}
code{font-size:.85rem}.note{color:#666;font-size:.9rem}nav a{margin-right:.8rem}
.warn{background:#fdf1e7;border-left:4px solid #c8553d;padding:.4rem .6rem}
svg{display:block;margin:.6rem 0;max-width:100%;height:auto}
"""


def h(text: str | None, limit: int | None = None) -> str:
    """Text from the data, escaped for HTML text and attribute values."""
    return escape(visible(text, limit), quote=True)


def render_html(report: RunReport) -> str:
    title = f"Quality report: {h(report.name or 'run')}"
    sections = [_funnel(report), _rehearsal(report), _reasons(report), _lengths(report),
                _languages(report), _duplicates(report), _consistency(report),
                _evaluation(report)]
    sections = [section for section in sections if section]
    nav = " ".join(f'<a href="#{anchor}">{name}</a>' for anchor, name, _ in sections)
    body = "\n".join(f'<section id="{anchor}"><h2>{name}</h2>\n{html}</section>'
                     for anchor, name, html in sections)
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\';'
            ' style-src \'unsafe-inline\'">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n'
            f'<h1>{title}</h1>\n<p>{_summary(report)}</p>\n<nav>{nav}</nav>\n{body}\n'
            '</body>\n</html>\n')


def _summary(report: RunReport) -> str:
    final = report.final
    seed = "" if report.seed is None else f", seed {report.seed}"
    return (f"Recipe <bdi>{h(report.recipe)}</bdi> (sha256 <code>{h(report.recipe_sha256[:12])}"
            f"</code>){seed}: {final['input']:,} input rows{added_note(final)} →"
            f" <b>{final['train']:,} train + {final['eval']:,} eval</b>"
            f"{general_eval_note(final)}; {final['rejected']:,} rejected"
            f" ({percent(final['rejected'], final['input'] + final.get('added', 0))}).")


def _funnel(report: RunReport) -> tuple[str, str, str]:
    final = report.final
    general = final.get("general_eval", 0)
    rows = [(f"{s.index:02d} {visible(s.name, 30)}", [s.kept, s.rejected, None, None, None])
            for s in report.steps]
    rows.append(("dataset", [None, None, final["train"], final["eval"], general or None]))
    series = [("kept", KEPT), ("rejected", REJECTED), ("train", TRAIN), ("eval", EVAL),
              ("general eval", GENERAL_EVAL)]
    chart = bar_chart("Records per step", rows, series if general else series[:4])
    with_added = any(s.added for s in report.steps)
    header = ["step", "name", "stage", "in", *(["added"] if with_added else []), "kept",
              "rejected", "kept %"]
    steps = [_step_cells(step, with_added) for step in report.steps]
    sources = [[h(s.get("name")), h(s.get("use")), _n(s.get("rows", 0)),
                _n(s.get("records", 0)), _n(s.get("unreadable", 0))] for s in report.sources]
    html = (chart + table(header, steps, "..." + "n" * (len(header) - 3))
            + f"<p>{dataset_line(final)}</p>")
    if sources:
        html += "<h3>Sources</h3>" + table(["source", "reader", "rows", "records",
                                            "unreadable rows"], sources, "..nnn")
    return "funnel", "Funnel", html


def _step_cells(step: StepCount, with_added: bool) -> list[str]:
    """A funnel row: the added column only when some step added records."""
    added = [f"+{step.added:,}" if step.added else ""] if with_added else []
    return [f"{step.index:02d}", h(step.name), h(step.use), _n(step.rows_in), *added,
            _n(step.kept), _n(step.rejected), percent(step.kept, step.rows_in + step.added)]


def _reasons(report: RunReport) -> tuple[str, str, str]:
    if not report.reasons:
        return "reasons", "Rejection reasons", "<p>Nothing was rejected.</p>"
    chart = bar_chart("Rejections per reason",
                      [(f"{visible(g.step, 16)} · {visible(g.reason, 18)}", [g.count])
                       for g in report.reasons], [("rejected", REJECTED)])
    inputs = step_inputs(report)
    counts = [[h(g.step), h(g.reason), _n(g.count), percent(g.count, inputs.get(g.step, 0))]
              for g in report.reasons]
    parts = [chart, table(["step", "reason", "rejected", "of step input"], counts, "..nn")]
    if report.more_reasons:
        parts.append(f'<p class="note">{h(more_reasons_note(report.more_reasons))}</p>')
    parts.append(f'<p class="note">The first {EXAMPLES} rejections of each reason.</p>')
    for group in report.reasons:
        parts.append(f"<h3>{h(group.step)} · {h(group.reason)}: {group.count:,}</h3>")
        parts.append(table(["id", "detail", "prompt", "response"],
                           [_example_cells(e) for e in group.examples], "c.tt"))
    return "reasons", "Rejection reasons", "\n".join(parts)


def _example_cells(example: Example) -> list[str]:
    if example.raw and not (example.prompt or example.response):
        return [_code(example.id), h(example.detail, TEXT_CHARS),
                "unreadable row: " + h(example.raw, TEXT_CHARS), ""]
    return [_code(example.id), h(example.detail, TEXT_CHARS), h(example.prompt, TEXT_CHARS),
            h(example.response, TEXT_CHARS)]


def _lengths(report: RunReport) -> tuple[str, str, str]:
    lengths, parts = report.lengths, []
    for part, groups in (("Response", lengths.response), ("Prompt", lengths.prompt)):
        labels, counts = length_bins([groups["kept"], groups["rejected"]])
        parts.append(f"<h3>{part} length in characters</h3>" + column_chart(
            f"{part} length in characters, share of kept and of rejected records", labels,
            [("kept", KEPT, counts[0]), ("rejected", REJECTED, counts[1])]))
    rows = [[f"{part}, {group}", *percentiles(values)]
            for part, groups in (("response", lengths.response), ("prompt", lengths.prompt))
            for group, values in groups.items()]
    parts.append(table(["text", "records", "min", "median", "90th percentile", "max"], rows,
                       ".nnnnn"))
    note = sample_note(lengths.measured, lengths.total)
    parts.append(f'<p class="note">Each bar is a share of its group\'s records, with lengths from'
                 f' its label up to the next label. {note}</p>')
    return "lengths", "Lengths", "\n".join(parts)


def _languages(report: RunReport) -> tuple[str, str, str] | None:
    languages = report.languages
    if languages is None:
        return None
    codes = sorted(set(languages.prompt) | set(languages.response),
                   key=lambda code: (code == "", -languages.prompt.get(code, 0), code))
    names = [visible(code, 12) if code else "not judged" for code in codes]
    chart = column_chart("Kept records per language", names[:16], [
        ("prompts", PROMPT, [languages.prompt.get(code, 0) for code in codes[:16]]),
        ("responses", RESPONSE, [languages.response.get(code, 0) for code in codes[:16]])])
    rows = [[h(code) if code else "not judged", _n(languages.prompt.get(code, 0)),
             _n(languages.response.get(code, 0))] for code in codes]
    if languages.unlabelled:
        rows.append(["no language recorded", _n(languages.unlabelled), _n(languages.unlabelled)])
    note = f"Prompt and response languages differ in {languages.mismatched:,} kept records."
    if languages.sampled:
        note += f" Measured on a sample of {languages.measured:,} kept records."
    return ("languages", "Languages", chart + table(["language", "prompts", "responses"], rows,
                                                    ".nn") + f'<p class="note">{note}</p>')


def _duplicates(report: RunReport) -> tuple[str, str, str] | None:
    duplicates = report.duplicates
    if duplicates is None:
        return None
    methods = ", ".join(f"{h(name) or 'unspecified'} {count:,}"
                        for name, count in duplicates.methods.items())
    buckets = [(f"{low}" if low == high else f"{low}–{high}" if high else f">{low - 1}",
                sum(n for size, n in duplicates.sizes.items()
                    if size >= low and (high is None or size <= high)))
               for low, high in CLUSTER_SIZES]
    buckets = [bucket for bucket in buckets if bucket[1]]
    chart = column_chart("Clusters by size (survivor included)", [b[0] for b in buckets],
                         [("clusters", REJECTED, [b[1] for b in buckets])], share=False)
    rows = [[_n(c.size), h(c.step), _code(c.survivor_id), similarity_range(c.similarity),
             h(c.survivor.prompt, TEXT_CHARS) if c.survivor else
             "(not among this step's kept records)"] for c in duplicates.largest]
    return ("duplicates", "Duplicates",
            f"<p>{duplicates.removed:,} duplicates removed in {duplicates.clusters:,} clusters"
            f" (by method: {methods}).</p>" + chart + "<h3>Largest clusters</h3>"
            + table(["size", "step", "survivor", "similarity", "survivor's prompt"], rows,
                    "n.c.t"))


def _consistency(report: RunReport) -> tuple[str, str, str] | None:
    if not report.consistency:
        return None
    counts = [[h(f.rule), _n(f.rejected), _n(f.flagged)] for f in report.consistency]
    parts = [table(["rule", "rejected", "kept, flagged"], counts, ".nn")]
    if report.more_rules:
        parts.append(f'<p class="note">{h(more_rules_note(report.more_rules))}</p>')
    for findings in report.consistency:
        rows = [[outcome, _code(e.id), h(e.detail, TEXT_CHARS), _code(e.other_id),
                 *(h(text, SHORT_CHARS) for text in (e.other_answer, e.prompt, e.response))]
                for outcome, found in (("rejected", findings.rejected_examples),
                                       ("flagged", findings.flagged_examples)) for e in found]
        parts.append(f"<h3>{h(findings.rule)}</h3>" + table(
            ["outcome", "id", "detail", "other record", "other answer", "prompt", "response"],
            rows, ".c.cttt"))
    return "consistency", "Consistency findings", "\n".join(parts)


def _rehearsal(report: RunReport) -> tuple[str, str, str] | None:
    from curate.plugins.report_rehearsal import html_section  # it uses this module's helpers

    return html_section(report.rehearsal)


def _evaluation(report: RunReport) -> tuple[str, str, str] | None:
    from curate.plugins.report_eval import html_section  # it uses this module's helpers

    return html_section(report.evaluation)


def table(header: list[str], rows: list[list[str]], kinds: str = "") -> str:
    """An HTML table of cells that are already HTML; `kinds` has a letter per column: n for
    numbers (right-aligned), t for text from the data (its own direction, wrapped), c or . for
    the rest."""
    kinds = kinds.ljust(len(header), ".")
    head = "".join(f"<th{CELL_CLASSES['n'] if kind == 'n' else ''}>{name}</th>"
                   for name, kind in zip(header, kinds))
    body = "".join("<tr>" + "".join(f"<td{CELL_CLASSES.get(kind, '')}>{cell}</td>"
                                    for cell, kind in zip(row, kinds)) + "</tr>\n"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>"


def _code(text: str) -> str:
    return f"<code>{h(text)}</code>" if text else ""


def _n(number: int) -> str:
    return f"{number:,}"
