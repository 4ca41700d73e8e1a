"""Suites: declarative TOML files validated into typed configs and expanded into cells.

Five modules, one job each, depending one way (``loading -> checks -> limits, expansion -> schema``):

* :mod:`~upbench.suite.schema`: the typed specs, one dataclass per TOML table;
* :mod:`~upbench.suite.expansion`: cells (each a resolved configuration with a stable id),
  ``--only`` filters, :class:`Suite`;
* :mod:`~upbench.suite.checks`: cross-field rules and what would fail once cells run;
* :mod:`~upbench.suite.limits`: what a run needs from the data and the device (batch vs training
  set, Triton on CPU, memory estimates);
* :mod:`~upbench.suite.loading`: shipped suites and TOML files, ``--set`` overrides,
  :func:`load_suite`, :func:`dump_toml`.

Every problem raises one :class:`~upbench.errors.ConfigError` with one line each.
"""

from __future__ import annotations

from upbench.suite.checks import cell_problems, data_problems
from upbench.suite.expansion import PROTOCOL_VERSION, Cell, Suite, cell_id_of, filter_problems
from upbench.suite.loading import (
    SUITE_PACKAGE,
    apply_overrides,
    builtin_suites,
    describe_builtin_suites,
    dump_toml,
    load_suite,
    parse_suite,
)
from upbench.suite.schema import (
    ARCHITECTURES,
    PROBE_PROTOCOLS,
    PROTOCOL_SCALE,
    PROTOCOLS,
    ArchitectureSpec,
    DatasetSpec,
    EvalSpec,
    ExecutorSpec,
    ModelSpec,
    OpsSpec,
    ProfileSpec,
    SuiteConfig,
    SuiteMeta,
    VariantSpec,
    probe_scale,
)

__all__ = [
    "ARCHITECTURES",
    "PROBE_PROTOCOLS",
    "PROTOCOLS",
    "PROTOCOL_SCALE",
    "PROTOCOL_VERSION",
    "SUITE_PACKAGE",
    "ArchitectureSpec",
    "Cell",
    "DatasetSpec",
    "EvalSpec",
    "ExecutorSpec",
    "ModelSpec",
    "OpsSpec",
    "ProfileSpec",
    "Suite",
    "SuiteConfig",
    "SuiteMeta",
    "VariantSpec",
    "apply_overrides",
    "builtin_suites",
    "cell_id_of",
    "cell_problems",
    "data_problems",
    "describe_builtin_suites",
    "dump_toml",
    "filter_problems",
    "load_suite",
    "parse_suite",
    "probe_scale",
]
