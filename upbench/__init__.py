"""upbench: a benchmark and analysis suite for feature upsamplers in segmentation networks.

Data flows one way: dataset -> model (backbone, decoder, upsampler) -> metrics and profilers ->
one tidy results table -> report. This package holds the machinery; the upsampler zoo lives in
``operators/`` (imported as ``upbench_operators``) and registers itself on first lookup.
"""

from __future__ import annotations

from upbench.errors import (
    ConfigError,
    DatasetError,
    InputShapeError,
    InvalidOptionError,
    UnknownOperatorError,
    UnsupportedScaleError,
    UpbenchError,
)
from upbench.registry import (
    create_operator,
    get_operator,
    list_operators,
    load_plugins,
    operator_info,
    register_operator,
)
from upbench.upsampler import OperatorInfo, Upsampler

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DatasetError",
    "InputShapeError",
    "InvalidOptionError",
    "OperatorInfo",
    "UnknownOperatorError",
    "UnsupportedScaleError",
    "UpbenchError",
    "Upsampler",
    "__version__",
    "create_operator",
    "get_operator",
    "list_operators",
    "load_plugins",
    "operator_info",
    "register_operator",
]
