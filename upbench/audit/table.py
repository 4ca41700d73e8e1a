"""The audit as text: a terminal table (under 100 columns) and a markdown section for reports."""

from __future__ import annotations

import math
import textwrap

from upbench.audit.audit import Audit

WIDTH = 99

#: Checks in the order they are shown, with their display names.
CHECKS = {
    "pixel_colour": "pixel-colour rule",
    "local": "local classifier",
    "lr_nearest": "LR label, nearest",
    "guided_oracle": "guided label oracle",
}
#: Per-class columns are shown up to this many classes (else only mIoU; all of them in audit.csv).
MAX_CLASS_COLUMNS = 8


def _pct(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def _lines(audit: Audit) -> list[tuple[str, str, dict]]:
    """``(check label, ratio text, {class or 'mIoU': value})`` per shown line."""
    out = []
    local = next((r["check"] for r in audit.rows if r["check"].startswith("local_")), None)
    for check, label in CHECKS.items():
        name = local if check == "local" else check
        if name is None:
            continue
        ratios = sorted({r["ratio"] for r in audit.rows if r["check"] == name}, key=lambda r: r or 0)
        for ratio in ratios:
            values = {
                (r["class"] or "mIoU"): r["value"]
                for r in audit.rows
                if r["check"] == name and r["ratio"] == ratio and r["metric"] in ("mIoU", "IoU")
            }
            shown = label + (f" ({name.split('_')[1]})" if check == "local" else "")
            out.append((shown, "-" if ratio is None else f"x{ratio}", values))
    return out


def _shares(audit: Audit) -> str:
    shares = [(r["class"], r["value"]) for r in audit.rows if r["check"] == "class_share"]
    return ", ".join(f"{c} {_pct(v)}" for c, v in shares)


def _local_note(audit: Audit) -> str:
    local = audit.meta["settings"]["local"]
    name = next((r["check"] for r in audit.rows if r["check"].startswith("local_")), None)
    if name is None:
        return ""
    trend = audit.value(name, "loss_trend_last_quarter")
    loss = audit.value(name, "final_loss")
    before = audit.value(name, "mIoU_three_quarters")
    state = "converged" if audit.meta.get("local_converged") else "NOT converged: its ceiling is a lower bound"
    trend_text = "n/a" if trend is None else f"{100 * trend:+.1f} %"
    return (
        f"local classifier: {local['rf']}x{local['rf']} px window, MLP width {local['width']}, "
        f"{local['iters']} steps of {local['batch']} pixels, AdamW lr {local['lr']:g} constant after "
        f"{local['warmup']} warm-up steps; final loss {loss:.3f}, change over the last quarter "
        f"{trend_text}; val mIoU {_pct(before)} at three quarters, {_pct(audit.value(name))} at the end "
        f"({state})"
    )


def _header(audit: Audit) -> str:
    m = audit.meta
    size = m["val_options"].get("size")
    where = f"{size} px, " if size else ""
    return (
        f"audit of '{m['dataset']}' ({where}{m['val_images']} val images, colour rule and local classifier "
        f"fitted on {m['train_images']} train images; key {m['key']})"
    )


def terminal_table(audit: Audit) -> str:
    """The audit as a plain-text table (mIoU and per-class IoU in %, under 100 columns)."""
    classes = list(audit.meta["classes"])
    per_class = len(classes) <= MAX_CLASS_COLUMNS
    header = ["check", "ratio", "mIoU", *([c[:6] for c in classes] if per_class else [])]
    rows = []
    for label, ratio, values in _lines(audit):
        row = [label, ratio, _pct(values.get("mIoU"))]
        if per_class:
            row += [_pct(values.get(c)) for c in classes]
        rows.append(row)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))  # noqa: E731
    notes = [
        f"boundary visibility: {_pct(audit.value('boundary_visibility', 'fraction'))} % of label-boundary "
        "pixels have an image edge within 1 px",
        f"class shares (val pixels, %): {_shares(audit)}",
        _local_note(audit),
        "" if per_class else "per-class IoU: see audit.csv",
    ]
    lines = [textwrap.fill(_header(audit), WIDTH), "", fmt(header), fmt(["-" * w for w in widths]), *map(fmt, rows)]
    lines += [""] + [textwrap.fill(n, WIDTH, subsequent_indent="  ") for n in notes if n]
    return "\n".join(lines)


def markdown_section(audit: Audit, level: int = 2) -> str:
    """The audit as a markdown section (a table with mIoU and per-class IoU, and the notes)."""
    classes = list(audit.meta["classes"])
    per_class = len(classes) <= MAX_CLASS_COLUMNS
    head = ["check", "ratio", "mIoU (%)", *(classes if per_class else [])]
    out = [f"{'#' * level} Audit of the dataset", "", _header(audit) + ".", ""]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, ratio, values in _lines(audit):
        cells = [label, ratio, _pct(values.get("mIoU"))] + ([_pct(values.get(c)) for c in classes] if per_class else [])
        out.append("| " + " | ".join(cells) + " |")
    out += [
        "",
        "The pixel-colour rule and the local classifier say how much of the label can be read off the image "
        "locally (high: an upsampler comparison measures how much image reaches the output); the LR label is "
        "what a perfect prediction on the stride-r grid gives when upsampled without the image; the guided "
        "oracle upsamples the same class shares with a joint-bilateral filter guided by the image.",
        "",
        f"- Boundary visibility: {_pct(audit.value('boundary_visibility', 'fraction'))} % of label-boundary pixels "
        "have an image edge within 1 px.",
        f"- Class shares of the val pixels (%): {_shares(audit)}.",
        f"- {_local_note(audit)}.",
        "",
    ]
    return "\n".join(out)


def _side_by_side(audits: list[Audit]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the mIoU of each check (and ratio) per dataset."""
    header = ["check", "ratio", *(a.meta["dataset"] for a in audits)]
    keys: list[tuple[str, str]] = []
    values: list[dict[tuple[str, str], str]] = []
    for audit in audits:
        found = {}
        for label, ratio, vals in _lines(audit):
            found[(label, ratio)] = _pct(vals.get("mIoU"))
            if (label, ratio) not in keys:
                keys.append((label, ratio))
        found[("boundary visibility (%)", "-")] = _pct(audit.value("boundary_visibility", "fraction"))
        values.append(found)
    keys.append(("boundary visibility (%)", "-"))
    return header, [[label, ratio, *(v.get((label, ratio), "-") for v in values)] for label, ratio in keys]


def comparison_text(audits: list[Audit]) -> str:
    """The mIoU (%) of every check for several audited datasets, side by side (terminal)."""
    header, rows = _side_by_side(audits)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join(["mIoU (%) side by side", fmt(header), fmt(["-" * w for w in widths]), *map(fmt, rows)])


def comparison_markdown(audits: list[Audit], command: str | None = None) -> str:
    """A report of several audits: the side-by-side table, then each dataset's own section."""
    header, rows = _side_by_side(audits)
    out = ["# Dataset audit", ""]
    if command:
        out += [f"Made with `{command}`.", ""]
    out += ["mIoU (%) of each check, side by side:", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    out.append("")
    for audit in audits:
        out.append(markdown_section(audit).replace("## Audit of the dataset", f"## {audit.meta['dataset']}", 1))
    return "\n".join(out)
