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
