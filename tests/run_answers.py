"""The deterministic answers of a run folder, for comparing two runs of the same cells."""

import math
from pathlib import Path

from upbench import results

VOLATILE_METRICS = ("cell", "train_time")  # wall-clock rows differ between any two runs


def answers(run_dir: Path) -> list[tuple]:
    """Sorted (cell_id, metric, statistic, value) of every non-volatile row.

    NaN values (a class absent from the validation images has no IoU) are replaced by the string
    "nan" so that two runs that both have no value compare equal, as NaN != NaN would not.
    """
    df = results.read_results(run_dir)
    df = df[~df["metric"].isin(VOLATILE_METRICS)]
    values = ["nan" if isinstance(v, float) and math.isnan(v) else v for v in df["value"]]
    return sorted(zip(df["cell_id"], df["metric"], df["statistic"], values))
