"""A tiny train suite (2 operators, both architectures, 2 iterations) shared by runner and CLI tests."""

TINY_TRAIN_SUITE = """
operators = ["bilinear", "resfu"]
seeds = [0]

[suite]
name = "tiny"
kind = "train"

[dataset]
name = "contextual"
train = { size = 32, count = 8 }
val = { size = 32, count = 2 }

[[architectures]]
name = "plain"
preset = "tiny"
scales = [4]

[[architectures]]
name = "hierarchical"
preset = "tiny"
protocols = ["jump"]

[train]
iters = 2
batch_size = 2
warmup_iters = 1

[profile]
warmup = 0
iters = 1
"""


def tiny_ops_suite(name: str, operators: str = '["bilinear"]') -> str:
    """A one-size ``ops`` suite (x2, one timed forward call per operator): the cheapest real run,
    for tests of what a runner does around its cells."""
    return f"""
operators = {operators}

[suite]
name = "{name}"
kind = "ops"

[ops]
scales = [2]
sizes = [[1, 4, 4, 4, 4]]
warmup = 0
iters = 1
modes = ["forward"]
"""


def tiny_plain_suite(name: str) -> str:
    """Three operators (parameter-free, CARAFE, ReSFU) on the tiny plain model at x4, one seed, two
    iterations on 32-pixel contextual images: the suite the plan-check tests change with ``--set``."""
    return f"""
operators = ["bilinear", "carafe", "resfu"]
seeds = [0]

[suite]
name = "{name}"

[[architectures]]
name = "plain"
preset = "tiny"
scales = [4]

[dataset]
name = "contextual"
train = {{ size = 32, count = 4 }}
val = {{ size = 32, count = 2 }}

[train]
iters = 2
batch_size = 2
"""
