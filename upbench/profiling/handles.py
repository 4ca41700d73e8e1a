"""upbench's fvcore op handles: a multiply-add (MAC) count for every aten op the zoo and models use.

fvcore counts one fused multiply-add as one "flop" but has no handle for elementwise ops,
reductions, softmax, attention or data movement, and silently counts them as 0 (anchors.md 3.2).
The conventions below fill that gap; :data:`MAC_CONVENTIONS` states them per op.

* A MAC is one multiply-add; every other arithmetic op counts as one MAC as well.
* Elementwise arithmetic and activations (``add``, ``mul``, ``div``, ``exp``, ``sigmoid``,
  ``relu``, ``gelu``, ...): 1 per output element (broadcast-aware); integer/bool results count 0
  (index and shape arithmetic).
* Reductions (``sum``, ``mean``, vector norms) and ``col2im`` (``F.fold``): 1 per input element.
* ``softmax`` / ``log_softmax``: 4 per element (subtract max, exp, sum, divide).
* ``grid_sampler``: by its mode argument, 4 (bilinear), 1 (nearest) or 16 (bicubic) per output
  element (fvcore's own handle assumes bilinear for every mode).
* ``upsample_bicubic2d``: 16 per output element; ``_upsample_bilinear2d_aa`` (antialiased) is
  separable with ``t = 2*ceil(max(1, in/out))`` taps per axis: ``N*C*(h_in*W*t_w + H*W*t_h)``.
* ``avg_pool2d``: ``kh*kw`` per output element; max pooling, comparisons, selections: 0.
* ``einsum``: exact MACs of the optimal pairwise contraction order (numpy ``einsum_path``);
  fvcore's handle reports an approximate, sometimes fractional, number.
* ``scaled_dot_product_attention``: ``B*L*S*(E + Ev)`` for the two matmuls plus 5 per score
  (scale and softmax), as if written out as ``softmax(q @ k^T * scale) @ v``.
* ``baddbmm``: the batched matmul plus 1 per output element.
* Data movement (``im2col`` = ``F.unfold``, ``Tensor.unfold``, ``pixel_shuffle``, pads,
  ``repeat_interleave``, ...), creation (``ones_like``, ``linspace``) and dropout: 0 (ignored).
* Kept from fvcore: convolutions and matmuls (bias not counted), ``linear``, norms
  (``layer_norm``/``group_norm``: 5 per element with affine, 4 without; ``batch_norm`` in eval: 2),
  ``upsample_nearest2d`` 1 and ``upsample_bilinear2d`` 4 per output element,
  ``adaptive_avg_pool2d`` 1 per input element.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

Handle = Callable[[list[Any], list[Any]], int]

_INT_TYPES = {"Long", "Int", "Short", "Char", "Byte", "Bool"}


def shape_of(val: Any) -> list[int] | None:
    """The static shape of a traced ``torch._C.Value`` (``None`` for non-tensors or unknown sizes)."""
    ty = val.type()
    if not hasattr(ty, "sizes"):
        return None
    try:
        sizes = ty.sizes()
    except RuntimeError:
        return None
    if sizes is None or any(s is None for s in sizes):
        return None
    return [int(s) for s in sizes]


def float_numel(val: Any) -> int:
    """Elements of a floating-point (or complex) tensor value; 0 for integer/bool tensors and non-tensors."""
    shape = shape_of(val)
    if shape is None:
        return 0
    scalar_type = getattr(val.type(), "scalarType", lambda: None)()
    if scalar_type in _INT_TYPES:
        return 0
    return math.prod(shape)


def constant(val: Any) -> Any:
    """The constant value of a traced argument, lists included (``None`` if not a constant)."""
    node = val.node()
    if node.kind() == "prim::ListConstruct":
        items = [constant(v) for v in node.inputs()]
        return None if any(i is None for i in items) else items
    try:
        return val.toIValue()
    except RuntimeError:
        return None


def per_output(factor: int) -> Handle:
    """Handle counting ``factor`` MACs per element of the first output."""

    def handle(inputs: list[Any], outputs: list[Any]) -> int:
        return factor * float_numel(outputs[0])

    return handle


def per_input(factor: int) -> Handle:
    """Handle counting ``factor`` MACs per element of the first input."""

    def handle(inputs: list[Any], outputs: list[Any]) -> int:
        return factor * float_numel(inputs[0])

    return handle


_GRID_MODE_MACS = {0: 4, 1: 1, 2: 16}  # aten's interpolation_mode: bilinear, nearest, bicubic


def grid_sampler(inputs: list[Any], outputs: list[Any]) -> int:
    """``grid_sampler(input, grid, mode, padding, align_corners)``: 4/1/16 per output element."""
    mode = constant(inputs[2])
    if mode not in _GRID_MODE_MACS:
        raise ValueError(f"grid_sampler: unknown interpolation mode {mode!r}")
    return _GRID_MODE_MACS[mode] * float_numel(outputs[0])


def upsample_bilinear_aa(inputs: list[Any], outputs: list[Any]) -> int:
    """Antialiased bilinear: separable passes (W then H) with ``2*ceil(max(1, in/out))`` taps per axis."""
    n, c, hi, wi = shape_of(inputs[0]) or [0, 0, 0, 0]
    _, _, ho, wo = shape_of(outputs[0]) or [0, 0, 0, 0]
    if not (ho and wo):
        return 0
    taps_w = 2 * math.ceil(max(1.0, wi / wo))
    taps_h = 2 * math.ceil(max(1.0, hi / ho))
    return n * c * (hi * wo * taps_w + ho * wo * taps_h)


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (list, tuple)):
        return (int(v[0]), int(v[-1])) if v else (1, 1)
    return int(v), int(v)


def avg_pool2d(inputs: list[Any], outputs: list[Any]) -> int:
    """``avg_pool2d(input, kernel_size, ...)``: ``kh*kw`` per output element."""
    kh, kw = _pair(constant(inputs[1]))
    return kh * kw * float_numel(outputs[0])


def _einsum_operands(val: Any) -> list[list[int]] | None:
    node = val.node()
    if node.kind() != "prim::ListConstruct":
        return None
    shapes = [shape_of(v) for v in node.inputs()]
    return None if any(s is None for s in shapes) else shapes  # type: ignore[return-value]


def einsum_macs(equation: str, shapes: list[list[int]]) -> int:
    """Exact MACs of ``einsum(equation, *operands of shapes)`` in numpy's optimal pairwise order.

    Each pairwise (or single-operand) contraction costs the product of the sizes of all indices of
    its operands; explicit ``->`` equations without ``...`` only.
    """
    equation = equation.replace(" ", "")
    if "->" not in equation or "." in equation:
        raise ValueError(f"einsum_macs: needs an explicit '->' and no ellipsis, got {equation!r}")
    lhs, out = equation.split("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(f"einsum_macs: {len(terms)} operands in {equation!r} but {len(shapes)} shapes")
    size: dict[str, int] = {}
    for term, shape in zip(terms, shapes):
        if len(term) != len(shape):
            raise ValueError(f"einsum_macs: operand '{term}' does not match shape {shape}")
        for letter, n in zip(term, shape):
            size[letter] = max(size.get(letter, 1), n)  # broadcasting of size-1 dims
    if len(terms) == 1:
        return math.prod(size[c] for c in terms[0]) if set(terms[0]) != set(out) else 0
    views = [np.broadcast_to(np.zeros(1, dtype=np.float32), tuple(s)) for s in shapes]
    path = np.einsum_path(equation, *views, optimize="optimal")[0][1:]
    operands = list(terms)
    total = 0
    for step in path:
        picked = [operands[i] for i in step]
        for i in sorted(step, reverse=True):
            operands.pop(i)
        letters = set("".join(picked))
        keep = set(out).union(*operands) if operands else set(out)
        total += math.prod(size[c] for c in letters)
        operands.append("".join(sorted(letters & keep)))
    return total


def einsum(inputs: list[Any], outputs: list[Any]) -> int:
    """``einsum(equation, [operands])``: exact pairwise MACs (see :func:`einsum_macs`)."""
    equation = constant(inputs[0])
    shapes = _einsum_operands(inputs[1])
    if not isinstance(equation, str) or shapes is None:
        raise ValueError("einsum: cannot read the equation or operand shapes from the traced graph")
    return einsum_macs(equation, shapes)


def scaled_dot_product_attention(inputs: list[Any], outputs: list[Any]) -> int:
    """``B*L*S*(E + Ev)`` matmul MACs + 5 per score (scale, softmax)."""
    q, k, v = (shape_of(t) for t in inputs[:3])
    if q is None or k is None or v is None:
        return 0
    batch = math.prod(q[:-2])
    length, source = q[-2], k[-2]
    scores = batch * length * source
    return scores * (q[-1] + v[-1]) + 5 * scores


def baddbmm(inputs: list[Any], outputs: list[Any]) -> int:
    """``baddbmm(input, b1, b2)``: ``B*M*K*N`` + 1 per output element."""
    b1, b2 = shape_of(inputs[1]), shape_of(inputs[2])
    if b1 is None or b2 is None:
        return 0
    return b1[0] * b1[1] * b1[2] * b2[2] + float_numel(outputs[0])


def rms_norm(inputs: list[Any], outputs: list[Any]) -> int:
    """RMSNorm: 4 per element with a weight (square, mean, scale, weight), 3 without (as norms above)."""
    has_weight = len(inputs) > 2 and inputs[2].type().kind() != "NoneType"
    return (4 if has_weight else 3) * float_numel(outputs[0])


ELEMENTWISE_OPS = (
    "add", "add_", "sub", "sub_", "rsub", "mul", "mul_", "div", "div_", "neg", "reciprocal", "pow",
    "sqrt", "rsqrt", "exp", "exp_", "log", "abs", "square", "sigmoid", "sigmoid_", "tanh", "tanh_",
    "relu", "relu_", "relu6", "gelu", "silu", "silu_", "hardswish", "hardsigmoid", "leaky_relu",
    "leaky_relu_", "elu", "softplus", "erf", "clamp_min", "clamp_max", "clamp", "addcmul", "lerp", "cos", "sin",
)  # fmt: skip
REDUCTION_OPS = ("sum", "mean", "linalg_vector_norm", "norm", "frobenius_norm", "col2im", "cumsum")
SOFTMAX_OPS = ("softmax", "_softmax", "log_softmax")
ZERO_OPS = (
    "im2col", "unfold", "unflatten", "pixel_shuffle", "pixel_unshuffle", "pad", "reflection_pad2d",
    "replication_pad2d", "repeat", "repeat_interleave", "broadcast_tensors", "expand_as", "flip", "clone",
    "ones_like", "rand_like", "randn_like", "linspace", "meshgrid", "masked_fill_", "where", "lt", "le",
    "ne", "logical_and", "logical_or", "masked_fill", "index_select", "max_pool2d", "max_pool2d_with_indices",
    "adaptive_max_pool2d",
    "amax", "amin", "argmax", "feature_dropout", "dropout_", "alpha_dropout", "view_as", "reshape_as", "tile",
    "movedim", "sign", "round", "ceil", "trunc", "sort", "topk", "scatter", "scatter_add", "fill_",
    "zero_", "new_ones", "empty_like", "lift_fresh", "is_floating_point",
)  # fmt: skip

#: Every op with an upbench handle (``aten::<name>`` -> handle, ``None`` = counted as 0).
HANDLES: dict[str, Handle | None] = {
    **{f"aten::{op}": per_output(1) for op in ELEMENTWISE_OPS},
    **{f"aten::{op}": per_input(1) for op in REDUCTION_OPS},
    **{f"aten::{op}": per_output(4) for op in SOFTMAX_OPS},
    **{f"aten::{op}": None for op in ZERO_OPS},
    "aten::grid_sampler": grid_sampler,
    "aten::grid_sampler_2d": grid_sampler,
    "aten::upsample_bicubic2d": per_output(16),
    "aten::_upsample_bilinear2d_aa": upsample_bilinear_aa,
    "aten::avg_pool2d": avg_pool2d,
    "aten::einsum": einsum,
    "aten::scaled_dot_product_attention": scaled_dot_product_attention,
    "aten::baddbmm": baddbmm,
    "aten::rms_norm": rms_norm,
}

#: One line per convention, for reports and ``upbench info``.
MAC_CONVENTIONS: dict[str, str] = {
    "unit": "MAC = one multiply-add (fvcore's 'flop'); any other arithmetic op counts as one MAC",
    "elementwise": "1 per output element (" + ", ".join(ELEMENTWISE_OPS[:8]) + ", activations, ...)",
    "integer ops": "0 (index and shape arithmetic on integer/bool tensors)",
    "reductions": "1 per input element (sum, mean, vector norms, col2im)",
    "softmax": "4 per element (subtract max, exp, sum, divide)",
    "grid_sampler": "4 (bilinear), 1 (nearest), 16 (bicubic) per output element, read from its mode",
    "upsample": "nearest 1, bilinear 4, bicubic 16 per output element",
    "antialiased bilinear": "separable, 2*ceil(max(1, in/out)) taps per axis",
    "avg_pool2d": "kh*kw per output element; max pooling and comparisons: 0",
    "einsum": "exact MACs of the optimal pairwise contraction order",
    "scaled_dot_product_attention": "B*L*S*(E+Ev) + 5 per score (scale, softmax)",
    "conv/matmul/linear": "fvcore: N*prod(output)*Cin/groups*prod(kernel); bias not counted",
    "norms": "fvcore: layer/group/instance norm 5 per element (4 without affine); batch_norm (eval) 2",
    "rms_norm": "4 per element with a weight, 3 without",
    "data movement": "0: unfold/im2col, pixel_shuffle, pads, repeat_interleave, views, copies, dropout",
}
