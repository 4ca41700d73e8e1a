"""One cell: run one resolved configuration in its folder and return its rows.

A cell is the unit of work of a suite: one configuration (the ``config`` dict that
:mod:`upbench.suite` resolves and hashes into the cell id) run in one folder (``cell_dir``). This
package builds what the configuration names, trains, evaluates and profiles it, writes the cell's
own files and returns its measurement rows; it knows nothing of runs, suites, locks or executors.
The executors call :func:`run_cell` (and add the run's identity columns); the driver
(:mod:`upbench.driver`) plans, dispatches and merges above them.

Kinds (``config["kind"]``):

* ``train``: a segmentation model (architecture ``hierarchical``, ``plain`` or ``probe``: the
  ``quick``, ``ratio``, ``probe`` and paper suites) trained, evaluated with every registered metric
  and profiled (:mod:`upbench.cell.train`);
* ``ops``: one operator alone at one input size, profiled (the ``ops`` and ``cost`` suites;
  :mod:`upbench.cell.ops`).

Files of a cell folder: ``config.json`` (:func:`write_config`), ``model.pt``,
``per_image.parquet`` (the metrics' per-image records), ``train_log.csv``, ``checkpoints/``,
``pretrained.txt`` (with ``model.pretrained``), ``error.txt`` (if it failed; ``error_rank<r>.txt``
from a process of a multi-process cell).
"""

from __future__ import annotations

from upbench.cell.model import build_cell_model, operator_params
from upbench.cell.run import KINDS, cell_identity, read_config, run_cell, write_config

__all__ = ["KINDS", "build_cell_model", "cell_identity", "operator_params", "read_config", "run_cell", "write_config"]
