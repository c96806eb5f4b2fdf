"""The report's "Rehearsal mix" section, for a run with a rehearsal stage: the share of general
records in the training split against the target, with the warning the run printed when they
differ; what each rehearsal step did with its pool; and the held-out general slice, asked
against written. All from manifest.json: `split.rehearsal`, `split.general_eval` and each step's
`stats["rehearsal"]`. Keys a newer stage adds are listed too, under their own names."""

from __future__ import annotations

from dataclasses import dataclass

POOL_LABELS = {
    "rows": "rows read from the pool",
    "unreadable": "rows left out, unreadable or unusable",
    "records": "records",
    "considered": "considered, in the seeded order",
    "drawn": "drawn for training",
    "drawn_tokens": "drawn for training, in tokens",
    "held_out_wanted": "asked for the forgetting check",
    "held_out": "held out for the forgetting check",
    "duplicates": "rejected as duplicates",
    "contaminated": "rejected as too close to a task record",
    "empty_response": "rejected for an empty answer",
    "not_drawn": "not drawn (the draw stopped before them)",
}
PLAN_LABELS = {
    "task_records": "task records",
    "task_train": "task training examples",
    "task_train_tokens": "task training tokens",
    "wanted": "general data wanted for training",
    "pool_exhausted": "pool ran out",
    "overshoot_tokens": "tokens of the next record, which would overshoot the target",
}
SHOWN_ELSEWHERE = {"target_ratio", "count", "pool", "unreadable_rows"}
ASKED_KEYS = ("held_out_wanted", "held_out_asked")
"""Where a stage may record the held-out slice it was asked for."""
UNREADABLE_SHOWN = 5
GENERAL_EVAL_FILE = "dataset/general_eval.jsonl"


@dataclass
class PoolUse:
    """What one rehearsal step planned and did with its general pool."""

    step: str
    plan: dict
    pool: dict


@dataclass
class Rehearsal:
    mix: dict
    """The manifest's `split.rehearsal`: target, achieved shares, gap, warning."""
    steps: list[PoolUse]
    general_eval: int | None
    """Records written to dataset/general_eval.jsonl."""


def gather_rehearsal(steps: list[tuple[str, dict]], split: dict) -> Rehearsal | None:
    """The section's numbers from (step name, stats) pairs and the manifest's split, or None
    when no step planned a mix. A manifest without `split.rehearsal` has the mix measured here
    as the run measures it."""
    planned = [PoolUse(name, stats["rehearsal"], _dict(stats["rehearsal"].get("pool")))
               for name, stats in steps if isinstance(stats.get("rehearsal"), dict)]
    if not planned:
        return None
    mix = split.get("rehearsal")
    plan = planned[-1].plan
    if (not isinstance(mix, dict) and isinstance(split.get("train_origins"), dict)
            and "target_ratio" in plan and plan.get("count") in ("examples", "tokens")):
        from curate.mixing import achieved_mix

        mix = achieved_mix(plan, split)
    return Rehearsal(_dict(mix), planned, split.get("general_eval"))


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def mix_rows(mix: dict) -> list[list[str]]:
    """[measure, target, achieved, gap] for the examples and (when counted) tokens in train;
    the target and gap on the measure the stage aimed at."""
    rows = []
    for unit in ("examples", "tokens"):
        share = mix.get(unit)
        if not isinstance(share, dict):
            continue
        aimed = unit == mix.get("count")
        gap = mix.get("gap_pp")
        rows.append([f"general share of training {unit}",
                     _percent(mix.get("target")) if aimed else "",
                     f"{_percent(share.get('ratio'))} ({number(share.get('general'))} of"
                     f" {number(share.get('train'))})",
                     f"{gap:+.2f} percentage points" if aimed and _is_number(gap) else ""])
    return rows


def mix_note(mix: dict) -> tuple[str, str]:
    """("warning", the run's warning) when the mix missed its target, else ("note", a line)."""
    if mix.get("warning"):
        return "warning", str(mix["warning"])
    if not mix:
        return "note", "The run recorded no measured mix (no training split to measure)."
    return "note", "The run printed no warning: the mix is within tolerance of its target."


def pool_table(steps: list[PoolUse]) -> tuple[list[str], list[list[str]]]:
    """A row per pool and plan figure, a column per rehearsal step."""
    rows = [[label, *(number(step.pool.get(key)) for step in steps)]
            for key, label in _labelled([step.pool for step in steps], POOL_LABELS)]
    rows += [[label, *(_plan_value(step.plan, key) for step in steps)]
             for key, label in _labelled([step.plan for step in steps], PLAN_LABELS)]
    return ["step", *(step.step for step in steps)], rows


def _labelled(dicts: list[dict], labels: dict[str, str]) -> list[tuple[str, str]]:
    """(key, label) for the known keys present, in their order, then other plain values."""
    present = {key for d in dicts for key, value in d.items()
               if key not in SHOWN_ELSEWHERE and _is_plain(value)}
    known = [(key, label) for key, label in labels.items() if key in present]
    return known + [(key, key.replace("_", " ")) for key in sorted(present - labels.keys())]


def _plan_value(plan: dict, key: str) -> str:
    value = plan.get(key)
    if key == "wanted" and _is_number(value):
        return f"{number(value)} {plan.get('count', '')}".rstrip()
    return number(value)


def held_out_text(rehearsal: Rehearsal) -> str:
    """The held-out general slice: asked (when the stage records it), set aside, written."""
    set_aside = sum(step.pool.get("held_out", 0) for step in rehearsal.steps
                    if _is_number(step.pool.get("held_out")))
    asked = [value for value in (_asked(step) for step in rehearsal.steps)
             if value is not None]
    written = rehearsal.general_eval
    parts = [f"{number(sum(asked))} asked" if asked else "",
             f"{number(set_aside)} set aside by the rehearsal"
             f" step{'s' if len(rehearsal.steps) > 1 else ''}",
             f"{number(written)} in {GENERAL_EVAL_FILE}" if _is_number(written) else
             f"none in {GENERAL_EVAL_FILE}"]
    text = ("Held-out general records, for the forgetting check: "
            + ", ".join(part for part in parts if part) + ".")
    got = written if _is_number(written) else 0
    if asked and got < sum(asked):
        text += f" {sum(asked) - got:,} fewer than asked."
    elif got < set_aside:
        lost = set_aside - got
        text += (f" {lost:,} of those set aside {'was' if lost == 1 else 'were'} rejected by a"
                 f" later step.")
    return text


def _asked(step: PoolUse) -> int | float | None:
    values = [d.get(key) for key in ASKED_KEYS for d in (step.pool, step.plan)]
    return next((value for value in values if _is_number(value)), None)


def unreadable_rows(steps: list[PoolUse]) -> list[tuple[str, str]]:
    """(step, "location: why") for the first pool rows each step left out."""
    return [(step.step, str(row)) for step in steps
            for row in (step.pool.get("unreadable_rows") or [])[:UNREADABLE_SHOWN]]


def number(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() else f"{value:,.4g}"
    return "" if value is None else str(value)


def _percent(value) -> str:
    return f"{value:.2%}" if _is_number(value) else ""


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_plain(value) -> bool:
    return isinstance(value, (int, float, str, bool))


def markdown_section(rehearsal: Rehearsal | None) -> str:
    from curate.plugins.report_markdown import md, table

    if rehearsal is None:
        return ""
    kind, note = mix_note(rehearsal.mix)
    parts = [f"**Warning:** {md(note)}" if kind == "warning" else md(note)]
    if mix_rows(rehearsal.mix):
        parts.append(table(["measure", "target", "achieved", "gap"], [
            [md(cell) for cell in row] for row in mix_rows(rehearsal.mix)], ":--|--:|--:|--:"))
    header, rows = pool_table(rehearsal.steps)
    parts.append("The general pool:\n\n" + table(
        [md(cell) for cell in header], [[md(cell) for cell in row] for row in rows],
        "|".join([":--", *["--:"] * (len(header) - 1)])))
    parts.append(md(held_out_text(rehearsal)))
    left_out = unreadable_rows(rehearsal.steps)
    if left_out:
        parts.append(f"Pool rows left out (the first {UNREADABLE_SHOWN} per step):\n\n" + "\n".join(
            f"- {md(step)}: {md(row, 200)}" for step, row in left_out))
    return "## Rehearsal mix\n\n" + "\n\n".join(parts)


def html_section(rehearsal: Rehearsal | None) -> tuple[str, str, str] | None:
    from curate.plugins.report_html import h, table

    if rehearsal is None:
        return None
    kind, note = mix_note(rehearsal.mix)
    parts = [f'<p class="warn"><b>Warning:</b> {h(note)}</p>' if kind == "warning" else
             f"<p>{h(note)}</p>"]
    if mix_rows(rehearsal.mix):
        parts.append(table(["measure", "target", "achieved", "gap"], [
            [h(cell) for cell in row] for row in mix_rows(rehearsal.mix)], ".nnn"))
    header, rows = pool_table(rehearsal.steps)
    parts.append("<h3>The general pool</h3>" + table(
        [h(cell) for cell in header], [[h(cell) for cell in row] for row in rows],
        "." + "n" * (len(header) - 1)))
    parts.append(f"<p>{h(held_out_text(rehearsal))}</p>")
    left_out = unreadable_rows(rehearsal.steps)
    if left_out:
        parts.append(f"<h3>Pool rows left out (the first {UNREADABLE_SHOWN} per step)</h3><ul>"
                     + "".join(f"<li>{h(step)}: {h(row, 200)}</li>" for step, row in left_out)
                     + "</ul>")
    return "rehearsal", "Rehearsal mix", "\n".join(parts)
