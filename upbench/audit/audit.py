"""``audit_dataset``: the figures that tell whether a dataset can rank upsamplers.

Computed on the val split (the first ``count`` images), with what needs fitting fitted on the
first ``train_count`` images of the train split:

- ``class_share``: the share of each class among the labelled val pixels;
- ``pixel_colour``: the best per-pixel rule of the RGB value (:class:`~.ceilings.ColourRule`);
- ``local_<rf>px``: a conv net that sees ``rf`` px, trained to convergence (:mod:`.local`);
- ``lr_nearest`` per ratio r: the label seen only on the stride-r grid (class shares per cell),
  upsampled nearest: what resolution alone loses;
- ``guided_oracle`` per ratio: the same shares upsampled by a joint-bilateral filter guided by the
  image: how much of that loss the image can give back;
- ``boundary_visibility``: the share of label-boundary pixels where the image shows an edge.

If the pixel-colour or the local ceiling is high, the label can be read off the image locally and
a comparison of upsamplers on the data measures how much image reaches the output; if the LR
ceiling is high, the LR grid already holds the label and there is nothing to upsample.

The result is a tidy table (one row per ``check, ratio, class, metric``) plus ``meta`` (dataset,
options, settings, the local net's schedule and convergence, time, versions) and a ``key`` that
identifies the dataset's resolved options and the settings (see :mod:`.cache`).
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import torch

from upbench import __version__
from upbench.audit.ceilings import ColourRule, boundary_visibility, guided_oracle, miou, nearest_ceiling
from upbench.audit.local import LocalSchedule, predict_local, train_local
from upbench.data import build_dataset, dataset_info
from upbench.errors import ConfigError
from upbench.validation import PositiveFloat, PositiveInt, check_fields, raise_if

#: Bumped whenever a figure would come out differently for the same inputs (invalidates caches).
AUDIT_VERSION = 2
COLUMNS = ("check", "ratio", "class", "metric", "value")


@dataclass(frozen=True)
class AuditSettings:
    """What the audit computes and how (part of the cache key).

    Attributes:
        count: val images audited (the first ones of the split).
        train_count: train images the colour rule and the local net are fitted on.
        ratios: strides of the LR ceilings and the guided oracle.
        colour_bins: levels per RGB channel of the colour rule.
        sigma_range: range sigma of the guided oracle (RGB in [0, 1]).
        seed: seed of the local net's initialisation and crops.
        local: the local net's schedule.
    """

    count: PositiveInt = 64
    train_count: PositiveInt = 256
    ratios: tuple[PositiveInt, ...] = (4, 8, 16)
    colour_bins: PositiveInt = 32
    sigma_range: PositiveFloat = 0.1
    seed: int = 0
    local: LocalSchedule = field(default_factory=LocalSchedule)

    def __post_init__(self) -> None:
        problems = check_fields(self, "audit")
        if not problems and not self.ratios:
            problems.append("audit.ratios: expected at least one ratio")
        raise_if(problems, ConfigError)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Audit:
    """The tidy rows, the metadata and the cache key of one audit."""

    rows: list[dict[str, Any]]
    meta: dict[str, Any]

    @property
    def key(self) -> str:
        return self.meta["key"]

    def value(self, check: str, metric: str = "mIoU", ratio: int | None = None, cls: str | None = None) -> float:
        """One figure (``KeyError`` if the audit has no such row)."""
        for row in self.rows:
            if (row["check"], row["metric"], row["ratio"], row["class"]) == (check, metric, ratio, cls):
                return row["value"]
        raise KeyError((check, metric, ratio, cls))

    def to_json(self) -> dict[str, Any]:
        return {"meta": self.meta, "rows": self.rows}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Audit:
        return cls(rows=list(data["rows"]), meta=dict(data["meta"]))


def audit_key(name: str, train_options: dict, val_options: dict, settings: AuditSettings) -> str:
    """Hash of what decides the figures: dataset, its resolved options (the dataset's defaults filled
    in, so that options given and options left at their default give one key), the settings, the
    version."""
    defaults = dataset_info(name).options
    blob = json.dumps(
        {
            "dataset": name,
            "train": {**defaults, **train_options},
            "val": {**defaults, **val_options},
            "settings": settings.to_dict(),
            "v": AUDIT_VERSION,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _raw(dataset: Any, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``n`` raw samples (no transform): image ``[3, H, W]`` in [0, 255], label ``[H, W]``."""
    if not hasattr(dataset, "load"):
        raise ConfigError(f"dataset {type(dataset).__name__} has no raw access (load): cannot audit it")
    return [tuple(dataset.load(i)) for i in range(min(n, len(dataset)))]


def _class_rows(check: str, ratio: int | None, scores: dict, names: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = [_row(check, ratio, None, "mIoU", scores["mIoU"])]
    rows += [_row(check, ratio, names[k], "IoU", v) for k, v in enumerate(scores["IoU"])]
    return rows


def _row(check: str, ratio: int | None, cls: str | None, metric: str, value: Any) -> dict[str, Any]:
    return {
        "check": check,
        "ratio": ratio,
        "class": cls,
        "metric": metric,
        "value": None if value is None else float(value),
    }


def audit_dataset(
    name: str,
    *,
    root: str | None = None,
    train_options: dict[str, Any] | None = None,
    val_options: dict[str, Any] | None = None,
    settings: AuditSettings | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Audit:
    """Audit dataset ``name`` (options as in a suite's ``[dataset] train`` / ``val`` tables).

    ``progress(stage, done, total)`` is called as the work advances (the CLI draws a bar from it).
    """
    settings = settings or AuditSettings()
    train_options, val_options = dict(train_options or {}), dict(val_options or {})
    info = dataset_info(name)
    report = progress or (lambda stage, done, total: None)
    t0 = time.perf_counter()
    val = _raw(build_dataset(name, split="val", root=root, **val_options), settings.count)
    train = _raw(build_dataset(name, split="train", root=root, **train_options), settings.train_count)
    if not val or not train:
        raise ConfigError(f"dataset '{name}' has no samples to audit (val {len(val)}, train {len(train)})")
    k, ignore, names = info.num_classes, info.ignore_index, info.class_names
    labels = [label for _, label in val]
    images = [image for image, _ in val]
    rows: list[dict[str, Any]] = []

    counts = torch.zeros(k, dtype=torch.long)
    for label in labels:
        counts += torch.bincount(label[label != ignore].flatten(), minlength=k)[:k]
    rows += [_row("class_share", None, names[c], "share", counts[c] / max(1, int(counts.sum()))) for c in range(k)]

    rule = ColourRule(k, ignore, settings.colour_bins)
    for image, label in train:
        rule.fit(image, label)
    rows += _class_rows("pixel_colour", None, miou([rule.predict(i) for i in images], labels, k, ignore), names)
    report("colour rule", 1, 1)

    for r in settings.ratios:
        rows += _class_rows(
            "lr_nearest", r, miou([nearest_ceiling(lab, k, r, ignore) for lab in labels], labels, k, ignore), names
        )
        oracle = []
        for i, (image, label) in enumerate(val):
            oracle.append(guided_oracle(label, image, k, r, ignore, settings.sigma_range))
            report(f"guided oracle x{r}", i + 1, len(val))
        rows += _class_rows("guided_oracle", r, miou(oracle, labels, k, ignore), names)
    rows.append(_row("boundary_visibility", None, None, "fraction", boundary_visibility(labels, images, ignore)))

    schedule = settings.local

    def val_miou(net: torch.nn.Module) -> float:
        return miou([predict_local(net, i) for i in images], labels, k, ignore)["mIoU"]

    net, summary = train_local(
        train,
        k,
        ignore,
        schedule,
        seed=settings.seed,
        step_callback=lambda t, _: report("local net", t, schedule.iters),
        score=val_miou,
    )
    check = f"local_{schedule.rf}px"
    rows += _class_rows(check, None, miou([predict_local(net, i) for i in images], labels, k, ignore), names)
    rows.append(_row(check, None, None, "final_loss", summary["final_loss"]))
    rows.append(_row(check, None, None, "loss_trend_last_quarter", summary["loss_trend"]))
    rows.append(_row(check, None, None, "mIoU_three_quarters", summary["score_three_quarters"]))

    meta = {
        "dataset": name,
        "title": info.title,
        "train_options": train_options,
        "val_options": val_options,
        "settings": settings.to_dict(),
        "classes": list(names),
        "val_images": len(val),
        "train_images": len(train),
        "local_converged": summary["converged"],
        "key": audit_key(name, train_options, val_options, settings),
        "audit_version": AUDIT_VERSION,
        "seconds": time.perf_counter() - t0,
        "upbench": __version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "host": platform.node(),
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return Audit(rows=rows, meta=meta)
