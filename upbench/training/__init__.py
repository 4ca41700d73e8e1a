"""Training and evaluation of segmentation models.

Public API: :class:`TrainConfig`, :func:`train` -> :class:`TrainResult` (AdamW/SGD, poly schedule
with linear warm-up, per-group ``lr_mult``, seeds, deterministic mode, AMP on CUDA, checkpoints
and exact resume, DistributedDataParallel under torchrun), :func:`evaluate` (whole or sliding
window, at the label's resolution, via :class:`upbench.metrics.SegmentationMetrics`) and
:func:`predict_logits`.
"""

from __future__ import annotations

from upbench.training.config import TrainConfig
from upbench.training.distributed import DistInfo, init_distributed
from upbench.training.evaluate import evaluate
from upbench.training.inference import predict_logits, slide_inference
from upbench.training.loop import TrainResult, train
from upbench.training.optim import PolyWarmup, build_optimizer, build_scheduler

__all__ = [
    "DistInfo",
    "PolyWarmup",
    "TrainConfig",
    "TrainResult",
    "build_optimizer",
    "build_scheduler",
    "evaluate",
    "init_distributed",
    "predict_logits",
    "slide_inference",
    "train",
]
