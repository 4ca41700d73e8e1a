"""Several runs side by side (``python -m upbench compare RUN_A RUN_B [...]``).

Each run is a run folder or a report folder that ships its run. The first run is the reference:
every other run's operators are compared with the same operator in the first run, setting by
setting.

* **Matched settings.** A setting of run B matches the setting of run A with the same resolved
  configuration (:mod:`upbench.reporting.settings`); failing that, the one setting of run A with
  the same architecture, protocol, preset, dataset and scale, and the keys in which the two differ
  are reported (``differs``). Settings found in one run only are listed, never compared.
* **Paired where seeds and images pair.** When both runs ran an operator with the same seeds and
  scored the same validation images (image ids equal, from the per-image records), ``run − first``
  gets the two-stage paired bootstrap interval of :mod:`upbench.reporting.compare` (the same seed
  and image draws in both runs). Otherwise the difference of the means is given without an
  interval (``paired`` False) and the rows' ``std`` are the only uncertainty shown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from upbench.errors import UpbenchError
from upbench.reporting.compare import (
    SETTING_COLUMNS,
    STAT_COLUMNS,
    Difference,
    RunBootstrap,
    _interval,
    _setting_value,
)
from upbench.reporting.load import check_run_dir, suite_name
from upbench.reporting.settings import distinguishing_keys

NAMES = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
COLUMNS = ("setting", *SETTING_COLUMNS, "operator", "metric", "run", *STAT_COLUMNS, "paired", "differs")


@dataclass
class Run:
    """One compared run: its short name (A, B, ...), folder and bootstrap."""

    name: str
    path: Path
    boot: RunBootstrap

    def describe(self) -> str:
        from upbench.results import read_environment

        env = read_environment(self.boot.run_dir)
        commit = str(env.get("git_commit") or "")[:7]
        rows = self.boot.points
        commit = commit or ",".join(sorted({str(c)[:7] for c in rows.get("git_commit", pd.Series()).dropna()}))
        return (
            f"{self.name}: {self.path} (suite {suite_name(self.boot.run_dir)}{', commit ' + commit if commit else ''})"
        )


def load_runs(
    paths: Iterable[str | Path], metrics: Iterable[str] | None = None, n_boot: int = 2000, seed: int = 0
) -> list[Run]:
    """The runs to compare (two or more; each checked, :class:`UpbenchError` otherwise)."""
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise UpbenchError("compare: give two or more run folders (or report folders that ship their run)")
    if len(paths) > len(NAMES):
        raise UpbenchError(f"compare: at most {len(NAMES)} runs at once")
    for p in paths:
        check_run_dir(p)
    return [Run(NAMES[i], p, RunBootstrap(p, metrics, n_boot, seed)) for i, p in enumerate(paths)]


def _title_key(setting: dict) -> tuple:
    return tuple(_setting_value(setting, c) for c in SETTING_COLUMNS)


def match_settings(first: RunBootstrap, other: RunBootstrap) -> dict[str, tuple[str, list[str]]]:
    """``setting of other -> (setting of first, differing keys)`` for the settings that match."""
    out = {}
    by_title: dict[tuple, list[str]] = {}
    for sid, setting in first.settings.items():
        by_title.setdefault(_title_key(setting), []).append(sid)
    for sid, setting in sorted(other.settings.items()):
        if sid in first.settings:
            out[sid] = (sid, [])
            continue
        candidates = by_title.get(_title_key(setting), [])
        if len(candidates) == 1:
            keys = distinguishing_keys([first.settings[candidates[0]], setting])[1]
            out[sid] = (candidates[0], keys)
    return out


def run_difference(a: RunBootstrap, sid_a: str, b: RunBootstrap, sid_b: str, label: str, metric: str) -> Difference:
    """``label`` in run ``b`` minus ``label`` in run ``a``, paired by seed and image (see the module);
    ``n_paired`` 0 when the two cannot be paired."""
    seeds = tuple(sorted(set(a.seeds(sid_a, label)) & set(b.seeds(sid_b, label))))
    nothing = Difference(float("nan"), float("nan"), float("nan"), 0)
    if not seeds or (a.seed, a.n_boot) != (b.seed, b.n_boot):
        return nothing
    if any(not torch.equal(a.images(sid_a, label, s), b.images(sid_b, label, s)) for s in seeds):
        return nothing
    estimate = float(np.mean([b.point(sid_b, label, s, metric) - a.point(sid_a, label, s, metric) for s in seeds]))
    combined = a.combine(
        seeds, lambda s, slot: b.replicates(sid_b, label, s, slot, metric) - a.replicates(sid_a, label, s, slot, metric)
    )
    return _interval(estimate, combined, len(seeds))


def compare_runs(runs: list[Run]) -> tuple[pd.DataFrame, list[str]]:
    """The tidy comparison (``COLUMNS``; one row per matched setting, operator, metric and run; the
    first run's rows have no difference) and lines naming the settings that did not match."""
    first = runs[0]
    rows = []
    unmatched = []
    for run in runs[1:]:
        matched = match_settings(first.boot, run.boot)
        unmatched += [
            f"{run.name} only: {' / '.join(str(v) for v in _title_key(s))} (setting {sid})"
            for sid, s in sorted(run.boot.settings.items())
            if sid not in matched
        ]
        for sid_b, (sid_a, differs) in sorted(matched.items()):
            labels = sorted(set(first.boot.labels(sid_a)) & set(run.boot.labels(sid_b)))
            for label in labels:
                for metric in first.boot.metrics:
                    d = run_difference(first.boot, sid_a, run.boot, sid_b, label, metric)
                    mean_a, std_a, n_a = _stats(first.boot, sid_a, label, metric)
                    mean_b, std_b, n_b = _stats(run.boot, sid_b, label, metric)
                    common = {"setting": sid_a, **_setting_columns(first.boot, sid_a), "operator": label}
                    common["metric"] = metric
                    rows.append({**common, "run": first.name, "mean": mean_a, "std": std_a, "n_seeds": n_a})
                    paired = d.n_paired > 0
                    rows.append(
                        {
                            **common,
                            "run": run.name,
                            "mean": mean_b,
                            "std": std_b,
                            "n_seeds": n_b,
                            "diff": d.diff if paired else mean_b - mean_a,
                            "ci_low": d.ci_low,
                            "ci_high": d.ci_high,
                            "significant": d.significant if paired else False,
                            "n_paired": d.n_paired,
                            "paired": paired,
                            "differs": "; ".join(differs),
                        }
                    )
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame = frame.drop_duplicates(["setting", "operator", "metric", "run"]).reset_index(drop=True)
    first_only = set(first.boot.settings) - {
        m[0] for run in runs[1:] for m in match_settings(first.boot, run.boot).values()
    }
    unmatched += [
        f"{first.name} only: {' / '.join(str(v) for v in _title_key(first.boot.settings[sid]))} (setting {sid})"
        for sid in sorted(first_only)
    ]
    return frame, unmatched


def _stats(boot: RunBootstrap, sid: str, label: str, metric: str) -> tuple[float, float, int]:
    p = boot.points
    v = p[(p["setting_id"] == sid) & (p["label"] == label) & (p["metric"] == metric)]["value"]
    return float(v.mean()) if len(v) else float("nan"), float(v.std()) if len(v) > 1 else float("nan"), int(len(v))


def _setting_columns(boot: RunBootstrap, sid: str) -> dict:
    return {c: _setting_value(boot.settings.get(sid, {}), c) for c in SETTING_COLUMNS}


def _value(mean: float, std: float) -> str:
    if pd.isna(mean):
        return "—"
    return f"{100 * mean:.1f}" + ("" if pd.isna(std) else f"±{100 * std:.1f}")


def _diff(row: pd.Series) -> str:
    if pd.isna(row["diff"]):
        return "—"
    if not row["paired"]:
        return f"{100 * row['diff']:+.2f} (unpaired)"
    mark = "*" if row["significant"] else ""
    return f"{100 * row['diff']:+.2f} [{100 * row['ci_low']:+.2f}, {100 * row['ci_high']:+.2f}]{mark}"


def comparison_text(runs: list[Run], frame: pd.DataFrame, unmatched: list[str]) -> str:
    """Plain-text tables, one per matched setting and metric: each run's mean±std (points) and each
    later run minus the first with its interval."""
    lines = ["Runs:", *(f"  {r.describe()}" for r in runs), ""]
    lines.append(
        "Values: mean±std over seeds, points. Differences: run − A, paired by seed and validation image, with "
        "the 95 % paired-bootstrap interval; * the interval excludes 0; 'unpaired': the runs do not share "
        "seeds and images, no interval."
    )
    later = [r.name for r in runs[1:]]
    for (sid, metric), part in frame.groupby(["setting", "metric"], sort=True):
        first_row = part.iloc[0]
        title = " / ".join(str(first_row[c]) for c in SETTING_COLUMNS)
        differs = sorted({d for d in part["differs"].dropna() if d})
        suffix = f" — differs: {'; '.join(differs)}" if differs else ""
        lines += ["", f"{title} (setting {sid}), {metric} (%){suffix}"]
        header = ["operator", *(r.name for r in runs), *(f"{n} − A" for n in later)]
        body = []
        for label, op in part.groupby("operator", sort=True):
            by_run = {r["run"]: r for _, r in op.iterrows()}
            cells = [label]
            cells += [_value(by_run[r.name]["mean"], by_run[r.name]["std"]) if r.name in by_run else "—" for r in runs]
            cells += [_diff(by_run[n]) if n in by_run else "—" for n in later]
            body.append(cells)
        lines += _aligned([header, *body])
    if unmatched:
        lines += ["", "Not compared (no matching setting in the other run):", *(f"  {u}" for u in unmatched)]
    return "\n".join(lines) + "\n"


def _aligned(rows: list[list[str]]) -> list[str]:
    """Rows as text columns: the first left-aligned, the others right-aligned, two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in rows
    ]
