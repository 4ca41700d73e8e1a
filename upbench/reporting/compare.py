"""Differences between operators with bootstrap intervals, tie groups and seed-rank agreement.

:func:`compare` is the public API. For each setting (:mod:`upbench.reporting.settings`), operator
and accuracy metric it gives the mean over seeds, their sample std, and the difference to a
reference operator with a 95 % interval:

* **Paired by seed.** ``diff`` = mean over the seeds both operators ran of (operator - reference),
  each the dataset-level metric of that seed's cell.
* **Paired bootstrap over validation images.** Resample ``n`` images with replacement from the
  ``n`` validation images; the *same* draws serve every operator of that seed, and the metric is
  recomputed from the summed per-image counts of the drawn images
  (:func:`upbench.metrics.per_image.scores_from_counts`: mIoU and BIoU from summed
  intersections and unions, BF as the mean of the drawn images' BF), never as a mean of
  per-image mIoU.
* **Combined over seeds (two-stage bootstrap).** With ``S`` paired seeds, each bootstrap
  replicate draws ``S`` seeds with replacement and, for each drawn seed, an independent image
  resample, and averages the ``S`` differences. The interval (2.5 and 97.5 percentiles of the
  replicates) so covers both the choice of validation images and training randomness; with one
  seed it is the plain paired image bootstrap, which says nothing about seed-to-seed variation
  (``n_seeds`` = 1 says so). The reference against itself differs by exactly 0 in every
  replicate: interval [0, 0].
* ``significant``: the interval excludes 0.

All random draws come from ``numpy.random.default_rng`` seeded with ``seed``, the data seed, the
resample slot and the number of images, so results are reproducible and identical for every
pair of operators compared in a setting.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from upbench.errors import UpbenchError
from upbench.metrics import headline_metrics, higher_is_better, summary_metrics
from upbench.metrics.per_image import FILE_NAME, frame_to_arrays, read_per_image, scores_from_counts
from upbench.reporting.load import check_run_dir, load_rows, measurements
from upbench.reporting.settings import attach_setting_ids

#: Metrics recomputed at analysis time from each cell's saved model (not in the results rows):
#: the mosaic index of the upsampled feature on every validation image (lower: fewer block artefacts).
MODEL_METRICS = ("mosaic_index",)
LEVEL = 0.95
SETTING_COLUMNS = ("architecture", "protocol", "preset", "dataset", "scale")
#: The statistics of a comparison row: the operator's own over seeds, then its difference to the reference.
STAT_COLUMNS = ("mean", "std", "n_seeds", "diff", "ci_low", "ci_high", "significant", "n_paired")


@dataclass(frozen=True)
class Difference:
    """``a - b`` for one metric: point estimate, interval, and how many seeds were paired."""

    diff: float
    ci_low: float
    ci_high: float
    n_paired: int

    @property
    def significant(self) -> bool:
        return bool(self.ci_low > 0 or self.ci_high < 0)


class RunBootstrap:
    """The per-image data of a run's train cells and the bootstrap over it.

    Args:
        run_dir: a run directory (``results.jsonl`` and ``cells/<id>/per_image.parquet``).
        metrics: accuracy metrics (any summary score of a registered metric, or ``mosaic_index``;
            default: the headline metrics, ``mIoU``, ``BF``, ``BIoU`` and any registered as headline).
        n_boot: bootstrap replicates.
        seed: seed of every random draw.
    """

    def __init__(
        self, run_dir: str | Path, metrics: Iterable[str] | None = None, n_boot: int = 2000, seed: int = 0
    ) -> None:
        metrics = headline_metrics() if metrics is None else tuple(metrics)
        unknown = sorted(set(metrics) - set(summary_metrics()) - set(MODEL_METRICS))
        if unknown:
            valid = ", ".join((*summary_metrics(), *MODEL_METRICS))
            raise UpbenchError(f"compare: unknown metric(s) {', '.join(unknown)}; choose from {valid}")
        if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
            raise UpbenchError(f"compare: n_boot must be an int >= 1, got {n_boot!r}")
        self.run_dir = check_run_dir(run_dir)
        self.metrics = tuple(metrics)
        self.n_boot = n_boot
        self.seed = int(seed)
        rows = load_rows(self.run_dir)
        rows = rows[rows["kind"] == "train"]
        rows, self.settings = attach_setting_ids(rows, self.run_dir)
        points = measurements(rows)
        self.points = points[points["metric"].isin(self.metrics)]
        #: (setting_id, label, seed) -> cell_id of the finished train cells
        #: label -> registered operator (a variant's label differs from its operator's name)
        self.operators = dict(zip(rows["label"], rows["operator"]))
        self.cells = {
            (r.setting_id, r.label, int(r.seed)): r.cell_id
            for r in rows[rows["metric"] == "cell"].itertuples()
            if r.status == "ok"
        }
        self._arrays = cache(self._load_arrays)
        self._block_sums = cache(self._load_block_sums)
        self.device = "cpu"
        self._values = cache(self._resample_values)
        self._weights = cache(self._draw_weights)

    # ------------------------------------------------------------------ data
    def labels(self, setting_id: str) -> list[str]:
        """Operator labels of a setting (sorted)."""
        return sorted({label for sid, label, _ in self.cells if sid == setting_id})

    def seeds(self, setting_id: str, label: str) -> list[int]:
        """Seeds of ``label`` in the setting that have per-image records."""
        return sorted(
            s
            for sid, lab, s in self.cells
            if sid == setting_id and lab == label and self._arrays(self.cells[(sid, lab, s)]) is not None
        )

    def _load_arrays(self, cell_id: str) -> dict[str, torch.Tensor] | None:
        """The cell's per-image records, or None: none there, or a file that does not read as them
        (then, in a run folder, moved aside with one warning, which makes the cell need a rerun:
        :func:`upbench.results.needs_rerun`; in a shipped report folder only the warning)."""
        import warnings

        from upbench.results import RESULTS_FILE, move_aside

        path = self.run_dir / "cells" / cell_id / FILE_NAME
        if not path.is_file():
            return None
        try:
            return frame_to_arrays(read_per_image(path))
        except Exception as err:  # noqa: BLE001 - any junk file: this cell has no records, the report goes on
            problem = f"not per-image records ({type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]})"
            if (self.run_dir / RESULTS_FILE).is_file():
                move_aside(path, problem, "its cell needs a rerun (`upbench run` runs it again)")
            else:
                warnings.warn(f"{path}: {problem}; left out", RuntimeWarning, stacklevel=2)
            return None

    def _load_block_sums(self, cell_id: str) -> torch.Tensor:
        """``[n_images, 2]`` mosaic energy sums of the cell's saved model on its validation images."""
        from upbench.reporting.qualitative import cell_block_sums

        sums = torch.from_numpy(cell_block_sums(self.run_dir, cell_id, self.device))
        n = int(self._arrays(cell_id)["area_inter"].shape[0])
        if sums.shape[0] != n:
            raise UpbenchError(f"compare: cell {cell_id} has {n} per-image records but {sums.shape[0]} images now")
        return sums

    def _model_scores(self, cell_id: str, weights: torch.Tensor | None) -> dict[str, torch.Tensor]:
        from upbench.reporting.mosaic import index_from_sums

        sums = self._block_sums(cell_id)
        w = torch.ones(1, sums.shape[0], dtype=sums.dtype) if weights is None else weights.to(sums.dtype)
        totals = w @ sums  # (replicates, 2)
        return {"mosaic_index": index_from_sums(totals[:, 0], totals[:, 1])}

    def _draw_weights(self, data_seed: int, slot: int, n_images: int) -> torch.Tensor:
        """``(n_boot, n_images)`` draw counts of one image resample (multinomial, uniform)."""
        rng = np.random.default_rng([self.seed, abs(data_seed), int(data_seed < 0), slot, n_images])
        counts = rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=self.n_boot)
        return torch.from_numpy(counts.astype(np.float64))

    def _seed_draws(self, seeds: tuple[int, ...]) -> np.ndarray:
        """``(n_boot, S)`` indices into ``seeds``: the seeds of each replicate (with replacement)."""
        if len(seeds) == 1:
            return np.zeros((self.n_boot, 1), dtype=np.int64)
        rng = np.random.default_rng([self.seed, 7919, len(seeds), *(abs(s) for s in seeds)])
        return rng.integers(0, len(seeds), (self.n_boot, len(seeds)))

    def _resample_values(self, setting_id: str, label: str, data_seed: int, slot: int) -> dict[str, np.ndarray]:
        cell_id = self.cells[(setting_id, label, data_seed)]
        arrays = self._arrays(cell_id)
        weights = self._weights(data_seed, slot, int(arrays["area_inter"].shape[0]))
        scores = scores_from_counts(arrays, weights)
        if any(m in MODEL_METRICS for m in self.metrics):
            scores.update(self._model_scores(cell_id, weights))
        return {m: scores[m].numpy() for m in self.metrics if m in scores}

    def point(self, setting_id: str, label: str, data_seed: int, metric: str) -> float:
        """The metric of one cell recomputed from its per-image counts (equals its results row)."""
        cell_id = self.cells[(setting_id, label, data_seed)]
        if metric in MODEL_METRICS:
            return float(self._model_scores(cell_id, None)[metric][0])
        return float(scores_from_counts(self._arrays(cell_id))[metric][0])

    # ------------------------------------------------------------------ statistics
    def difference(self, setting_id: str, a: str, b: str | None, metric: str) -> Difference:
        """``a - b`` paired by seed, with the two-stage bootstrap interval (see the module);
        ``b=None``: the metric of ``a`` itself with its interval (for error bars)."""
        seeds_b = set(self.seeds(setting_id, b)) if b is not None else None
        seeds = tuple(
            sorted(set(self.seeds(setting_id, a)) & seeds_b if seeds_b is not None else self.seeds(setting_id, a))
        )
        if not seeds:
            return Difference(float("nan"), float("nan"), float("nan"), 0)
        estimate, combined = self._combined(setting_id, a, b, metric, seeds)
        return _interval(estimate, combined, len(seeds))

    def interaction(self, setting_hi: str, setting_lo: str, a: str, b: str, metric: str) -> Difference:
        """How the gap ``a - b`` changes between two settings: ``(a - b in setting_hi) - (a - b in
        setting_lo)``, over the seeds all four cells ran. Both settings must be evaluated on the same
        validation images (e.g. the same suite at two ratios): each replicate then draws the same
        seeds and images in both, so the interval of the change is paired like every difference."""
        seeds = tuple(
            sorted(set.intersection(*(set(self.seeds(sid, lab)) for sid in (setting_hi, setting_lo) for lab in (a, b))))
        )
        if not seeds:
            return Difference(float("nan"), float("nan"), float("nan"), 0)
        for s in seeds:
            self._check_paired(
                self.cells[(setting_hi, a, s)],
                self.cells[(setting_lo, a, s)],
                f"settings {setting_hi} and {setting_lo} (seed {s})",
                "their gaps cannot be paired",
            )
        est_hi, rep_hi = self._combined(setting_hi, a, b, metric, seeds)
        est_lo, rep_lo = self._combined(setting_lo, a, b, metric, seeds)
        return _interval(est_hi - est_lo, rep_hi - rep_lo, len(seeds))

    def _check_paired(self, cell_x: str, cell_y: str, who: str, consequence: str) -> None:
        """Two cells to be paired image by image must have scored the same validation images."""
        if not torch.equal(self._arrays(cell_x)["image"], self._arrays(cell_y)["image"]):
            raise UpbenchError(f"compare: {who} were evaluated on different validation images; {consequence}")

    def _combined(
        self, setting_id: str, a: str, b: str | None, metric: str, seeds: tuple[int, ...]
    ) -> tuple[float, np.ndarray]:
        """Point estimate and ``(n_boot,)`` two-stage bootstrap replicates of ``a - b`` (or ``a``)
        over ``seeds``; the draws depend only on the seeds and the number of images."""
        for s in seeds if b is not None else ():
            self._check_paired(
                self.cells[(setting_id, a, s)], self.cells[(setting_id, b, s)], f"{a} and {b} (seed {s})",
                "they cannot be paired",
            )  # fmt: skip

        def point(s: int) -> float:
            value = self.point(setting_id, a, s, metric)
            return value - self.point(setting_id, b, s, metric) if b is not None else value

        def replicates(s: int, slot: int) -> np.ndarray:
            values = self.replicates(setting_id, a, s, slot, metric)
            return values - self.replicates(setting_id, b, s, slot, metric) if b is not None else values

        estimate = float(np.mean([point(s) for s in seeds]))
        return estimate, self.combine(seeds, replicates)

    def combine(self, seeds: tuple[int, ...], replicates) -> np.ndarray:  # noqa: ANN001
        """``(n_boot,)`` two-stage replicates: ``replicates(seed, slot)`` gives the ``(n_boot,)`` image
        resample of one seed's difference in resample slot ``slot``; each replicate averages the slots'
        values of the seeds drawn for it (:meth:`_seed_draws`)."""
        diffs = np.stack([np.stack([replicates(s, slot) for s in seeds]) for slot in range(len(seeds))])
        draws = self._seed_draws(seeds)  # (replicate, slot): indices into seeds; diffs is (slot, seed, replicate)
        return diffs[np.arange(len(seeds))[None, :], draws, np.arange(self.n_boot)[:, None]].mean(1)

    def images(self, setting_id: str, label: str, data_seed: int) -> torch.Tensor:
        """The validation image ids of one cell's per-image records, in order."""
        return self._arrays(self.cells[(setting_id, label, data_seed)])["image"]

    def replicates(self, setting_id: str, label: str, data_seed: int, slot: int, metric: str) -> np.ndarray:
        """``(n_boot,)`` values of ``metric`` of one cell over the image resamples of ``slot``: the
        same draws for every cell of that seed and number of images, in this run and in any other
        :class:`RunBootstrap` with the same ``seed`` and ``n_boot`` (so that runs can be paired)."""
        return self._values(setting_id, label, data_seed, slot)[metric]

    def compare(self, reference: str = "bilinear") -> pd.DataFrame:
        """The table of :func:`compare` for one reference label."""
        out = []
        summary = self.points.groupby(["setting_id", "label", "metric"])["value"].agg(["mean", "std", "count"])
        for (sid, label, metric), stats in summary.iterrows():
            setting = self.settings.get(sid, {})
            row = {
                "setting_id": sid,
                **{c: _setting_value(setting, c) for c in SETTING_COLUMNS},
                "operator": label,
                "metric": metric,
                "reference": reference,
                "mean": float(stats["mean"]),
                "std": float(stats["std"]) if stats["count"] > 1 else float("nan"),
                "n_seeds": int(stats["count"]),
            }
            if reference in self.labels(sid):
                d = self.difference(sid, label, reference, metric)
                row.update(diff=d.diff, ci_low=d.ci_low, ci_high=d.ci_high, n_paired=d.n_paired)
                row["significant"] = d.significant
            else:
                row.update(diff=np.nan, ci_low=np.nan, ci_high=np.nan, n_paired=0, significant=False)
            out.append(row)
        columns = ["setting_id", *SETTING_COLUMNS, "operator", "metric", "reference", *STAT_COLUMNS]
        return pd.DataFrame(out, columns=columns).sort_values(["setting_id", "operator", "metric"], kind="mergesort")

    def tie_group(self, setting_id: str, metric: str) -> set[str]:
        """The best label by mean (the lowest for a metric declared ``higher_is_better=False``) and
        every label not significantly worse than it."""
        sub = self.points[(self.points["setting_id"] == setting_id) & (self.points["metric"] == metric)]
        if sub.empty:
            return set()
        means = sub.groupby("label")["value"].mean()
        higher = higher_is_better(metric)
        best = str(means.idxmax() if higher else means.idxmin())
        group = {best}
        for label in means.index:
            if label == best:
                continue
            d = self.difference(setting_id, str(label), best, metric)
            worse = d.ci_high < 0 if higher else d.ci_low > 0
            if d.n_paired == 0 or not worse:
                group.add(str(label))
        return group

    def seed_agreement(self, setting_id: str, metric: str) -> tuple[float, int]:
        """Mean Kendall tau-b between the operator rankings of every pair of seeds, and the pairs."""
        sub = self.points[(self.points["setting_id"] == setting_id) & (self.points["metric"] == metric)]
        table = sub.pivot_table(index="label", columns="seed", values="value", aggfunc="first")
        seeds = list(table.columns)
        taus = []
        for i, s in enumerate(seeds):
            for t in seeds[i + 1 :]:
                both = table[[s, t]].dropna()
                if len(both) >= 2:
                    taus.append(kendall_tau(both[s].to_numpy(), both[t].to_numpy()))
        taus = [t for t in taus if np.isfinite(t)]
        return (float(np.mean(taus)) if taus else float("nan")), len(taus)


def _interval(estimate: float, replicates: np.ndarray, n_paired: int) -> Difference:
    """The estimate with the central ``LEVEL`` interval of its bootstrap replicates."""
    tail = 100 * (1 - LEVEL) / 2
    finite = np.isfinite(replicates).any()
    low, high = np.nanpercentile(replicates, [tail, 100 - tail]) if finite else (np.nan,) * 2
    return Difference(estimate, float(low), float(high), n_paired)


def _setting_value(setting: dict, column: str) -> object:
    if column == "dataset":
        ds = setting.get("dataset")
        return ds.get("name") if isinstance(ds, dict) else ds
    return setting.get(column)


def kendall_tau(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b of two equally long score vectors (ties handled; NaN if either is constant)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    dx = np.sign(x[:, None] - x[None, :])
    dy = np.sign(y[:, None] - y[None, :])
    upper = np.triu_indices(len(x), k=1)
    dx, dy = dx[upper], dy[upper]
    denom = np.sqrt(np.count_nonzero(dx) * np.count_nonzero(dy))
    return float((dx * dy).sum() / denom) if denom > 0 else float("nan")


def compare(
    run_dir: str | Path,
    reference: str = "bilinear",
    metrics: Iterable[str] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (setting, operator, metric): ``mean``, ``std``, ``n_seeds`` over seeds and
    ``diff`` to ``reference`` with its 95 % paired-bootstrap interval ``ci_low``, ``ci_high``
    and ``significant`` (the interval excludes 0); see the module docstring for the method.

    Also: ``setting_id`` (hash of the resolved configuration without seed and operator), the
    setting's ``architecture``, ``protocol``, ``preset``, ``dataset``, ``scale``, ``reference``
    and ``n_paired`` (seeds run by both). Settings without the reference get NaN differences.
    """
    return RunBootstrap(run_dir, metrics, n_boot, seed).compare(reference)
