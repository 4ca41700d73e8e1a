"""DySample: upsampling by dynamic point sampling (Liu, Lu, Fu, Cao; ICCV 2023, arXiv:2308.15085).

Each HR pixel bilinearly samples the LR map at a learned position. For the HR pixel
``(s*I + i, s*J + j)`` of group ``g`` the position, in LR pixel units, is

    (J + 0.5, I + 0.5) + P0[i, j] + O[g, i, j](I, J),     P0[i, j] = ((j - (s-1)/2) / s, (i - (s-1)/2) / s)

where ``P0`` are the initial sub-pixel positions (``init_pos``) and the offsets ``O`` come from a
1x1 conv on ``x`` (style ``lp``): ``O = 0.25 * offset(x)`` (static scope) or, for DySample+,
``O = 0.5 * sigmoid(scope(x)) * offset(x)`` (dynamic scope). Sampling is ``grid_sample`` with
``align_corners=False`` and ``padding_mode='border'``, per channel group (4 by default). With zero
offsets the position is ``(p + 0.5) / s``, i.e. bilinear upsampling with ``align_corners=False``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from upbench.errors import InvalidOptionError
from upbench.registry import check_own_options, register_operator
from upbench.upsampler import Upsampler
from upbench.validation import PositiveInt

Style = Literal["lp", "pl"]

_CODE = "tiny-smart/dysample@81a1de5 dysample.py class DySample (includes the fixes 5dedafe and efcf8ae)"
_CONVENTIONS = {
    "lr_window": "continuous: LR pixel centre + initial sub-pixel position (j - (s-1)/2)/s + learned offset",
    "border": "grid_sample padding_mode='border' (positions clamped to the LR border)",
    "align_corners": "False",
    "groups": "4 channel groups, each with its own sampling positions",
}
_DEVIATIONS = (
    "float16/bfloat16 inputs: the sampling positions and grid_sample are computed in float32 and the result "
    "is cast back (the official computes the normalised positions in the input dtype, which loses sub-pixel "
    "precision on large maps); identical for float32/float64.",
)
_NOTES = (
    "Any output size (upbench extension; the official takes integer scales): the learned offset field at "
    "(s*h, s*w) is resized bilinearly to the output size and added to each output pixel's own centre "
    "(sample_points_at); at s times the input it is the official computation, with zero offsets bilinear.",
    "Unguided: the guide is accepted and ignored. Any integer scale (offsets are pixel-shuffled to s x s).",
    "At initialisation (offset weights N(0, 0.001), bias 0) the output is close to bilinear upsampling "
    "with align_corners=False; with zero offset weights it equals it up to float rounding (tested).",
    "style='pl' (the paper's pixel-shuffle-first 'DySample-S' family) is available as an option.",
    "fvcore has no default handle for grid_sample; MACs of the sampling need upbench's own handle.",
)


def initial_positions(scale: int, groups: int) -> Tensor:
    """The initial sub-pixel positions ``(1, 2*G*s*s, 1, 1)``: x components first, then y.

    Channel ``c*G*s*s + g*s*s + i*s + j`` holds component ``c`` (0: x, 1: y) of the offset of the
    sub-pixel ``(i, j)`` from its LR pixel centre, ``((j - (s-1)/2)/s, (i - (s-1)/2)/s)``.
    """
    h = (torch.arange(scale, dtype=torch.float64) - (scale - 1) / 2) / scale
    along_x = h.view(1, 1, scale).expand(groups, scale, scale)
    along_y = h.view(1, scale, 1).expand(groups, scale, scale)
    return torch.stack([along_x, along_y]).reshape(1, -1, 1, 1).to(torch.get_default_dtype())


def sample_points(x: Tensor, offset: Tensor, scale: int, groups: int) -> Tensor:
    """Bilinearly sample ``x`` at its LR pixel centres plus ``offset`` (in LR pixels), per group.

    Args:
        x: LR feature ``Tensor[B, C, h, w]``.
        offset: ``Tensor[B, 2*G*s*s, h, w]`` laid out as :func:`initial_positions`.
        scale: integer ratio ``s``.
        groups: channel groups ``G`` (``C`` divisible by ``G``).

    Returns:
        ``Tensor[B, C, s*h, s*w]`` in the dtype of ``x``.
    """
    b, c, h, w = x.shape
    s, g = scale, groups
    dtype = torch.promote_types(x.dtype, torch.float32)
    # (B, xy, G, i, j, h, w) -> (B*G, h*s, w*s, xy): HR row I*s + i, column J*s + j.
    off = offset.to(dtype).view(b, 2, g, s, s, h, w).permute(0, 2, 5, 3, 6, 4, 1).reshape(b * g, h * s, w * s, 2)
    cols = (torch.arange(w, dtype=dtype, device=x.device) + 0.5).repeat_interleave(s)
    rows = (torch.arange(h, dtype=dtype, device=x.device) + 0.5).repeat_interleave(s)
    centres = torch.stack(torch.broadcast_tensors(cols.view(1, -1), rows.view(-1, 1)), dim=-1)
    size = torch.tensor([w, h], dtype=dtype, device=x.device)
    grid = 2 * (centres + off) / size - 1
    out = F.grid_sample(
        x.to(dtype).reshape(b * g, c // g, h, w),
        grid,
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )
    return out.view(b, c, h * s, w * s).to(x.dtype)


def sample_points_at(x: Tensor, learned: Tensor, scale: int, groups: int, size: tuple[int, int]) -> Tensor:
    """DySample at any output size ``(H, W)`` (an upbench extension; DySample has integer scales only).

    The learned offsets (``offset`` minus ``init_pos``) form an ``(s*h, s*w)`` field per group, resized
    bilinearly to ``(H, W)``; HR pixel ``(P, Q)`` samples the LR map at its own centre
    ``((Q + 0.5) w / W, (P + 0.5) h / H)`` plus that offset. At ``(H, W) = (s*h, s*w)`` this is
    :func:`sample_points` (the centre equals LR centre + ``init_pos``); with zero offsets it is bilinear
    resizing with ``align_corners=False``.
    """
    b, c, h, w = x.shape
    s, g = scale, groups
    big_h, big_w = size
    dtype = torch.promote_types(x.dtype, torch.float32)
    field = learned.to(dtype).view(b, 2, g, s, s, h, w).permute(0, 2, 1, 5, 3, 6, 4).reshape(b * g, 2, h * s, w * s)
    if (big_h, big_w) != (h * s, w * s):
        field = F.interpolate(field, size=(big_h, big_w), mode="bilinear", align_corners=False)
    cols = (torch.arange(big_w, dtype=dtype, device=x.device) + 0.5) * (w / big_w)
    rows = (torch.arange(big_h, dtype=dtype, device=x.device) + 0.5) * (h / big_h)
    centres = torch.stack(torch.broadcast_tensors(cols.view(1, -1), rows.view(-1, 1)), dim=-1)
    lr_size = torch.tensor([w, h], dtype=dtype, device=x.device)
    grid = 2 * (centres + field.permute(0, 2, 3, 1)) / lr_size - 1
    out = F.grid_sample(
        x.to(dtype).reshape(b * g, c // g, h, w), grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return out.view(b, c, big_h, big_w).to(x.dtype)


class _DySampleBase(Upsampler):
    """DySample with static (``dyscope=False``) or dynamic (``True``) offset scope.

    Parameters mirror ``tiny-smart/dysample`` ``DySample``: ``offset`` (Conv2d ``C' -> 2*G*s*s`` for
    ``lp``, ``C/s^2 -> 2*G`` for ``pl``), ``scope`` (same shape, no bias; DySample+ only) and the
    buffer ``init_pos`` ``(1, 2*G*s*s, 1, 1)``.
    """

    dyscope: ClassVar[bool] = False

    def __init__(
        self,
        in_channels: int,
        scale: int,
        *,
        guide_channels: int | None = None,
        style: Style = "lp",
        groups: PositiveInt = 4,
    ) -> None:
        super().__init__(in_channels, scale, guide_channels=guide_channels)
        name = type(self).info.name
        check_own_options(self, locals())
        if in_channels % groups:
            raise InvalidOptionError(
                f"operator '{name}': in_channels={in_channels} is not divisible by groups={groups}"
            )
        if style == "pl" and in_channels % (scale * scale):
            raise InvalidOptionError(
                f"operator '{name}': style='pl' needs in_channels divisible by scale**2={scale * scale}, "
                f"got in_channels={in_channels}"
            )
        self.style = style
        self.groups = groups
        conv_in = in_channels // (scale * scale) if style == "pl" else in_channels
        conv_out = 2 * groups if style == "pl" else 2 * groups * scale * scale
        self.offset = nn.Conv2d(conv_in, conv_out, kernel_size=1)
        nn.init.normal_(self.offset.weight, std=0.001)
        nn.init.zeros_(self.offset.bias)
        if self.dyscope:
            self.scope = nn.Conv2d(conv_in, conv_out, kernel_size=1, bias=False)
            nn.init.zeros_(self.scope.weight)
        self.register_buffer("init_pos", initial_positions(scale, groups))

    def offsets(self, x: Tensor) -> Tensor:
        """The sampling offsets ``(B, 2*G*s*s, h, w)`` in LR pixels, ``init_pos`` included."""
        s = self.scale
        feat = F.pixel_shuffle(x, s) if self.style == "pl" else x
        if self.dyscope:
            raw, factor = self.offset(feat) * self.scope(feat).sigmoid(), 0.5
        else:
            raw, factor = self.offset(feat), 0.25
        if self.style == "pl":
            raw = F.pixel_unshuffle(raw, s)
        return raw * factor + self.init_pos

    def upsample(self, x: Tensor, guide: Tensor | None, size: tuple[int, int]) -> Tensor:
        offsets = self.offsets(x)
        if tuple(size) == (self.scale * x.shape[-2], self.scale * x.shape[-1]):
            return sample_points(x, offsets, self.scale, self.groups)
        return sample_points_at(x, offsets - self.init_pos, self.scale, self.groups, size)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, style={self.style!r}, groups={self.groups}, dyscope={self.dyscope}"


@register_operator(
    "dysample",
    title="DySample",
    guided=False,
    guide_passthrough=False,
    paper="ICCV 2023, arXiv:2308.15085",
    scales=None,
    any_size=True,
    code=_CODE,
    conventions={**_CONVENTIONS, "offsets": "lp style, static scope: 0.25 * conv1x1(x) + init_pos"},
    deviations=_DEVIATIONS,
    notes=_NOTES,
)
class DySample(_DySampleBase):
    """DySample (``lp`` style, 4 groups, static scope ``0.25``): the README's ``lpg4``."""

    dyscope = False


@register_operator(
    "dysample_plus",
    title="DySample+",
    guided=False,
    guide_passthrough=False,
    paper="ICCV 2023, arXiv:2308.15085",
    scales=None,
    any_size=True,
    code=_CODE + " with dyscope=True",
    conventions={
        **_CONVENTIONS,
        "offsets": "lp style, dynamic scope: 0.5 * sigmoid(scope(x)) * conv1x1(x) + init_pos",
    },
    deviations=_DEVIATIONS,
    notes=(
        *_NOTES,
        "The scope conv has no bias, as in tiny-smart/dysample after efcf8ae; the copy in "
        "tiny-smart/segmentation-with-upsamplers@3ae9265 predates that fix and its checkpoints carry an "
        "extra 'scope.bias' key (load those with strict=False).",
    ),
)
class DySamplePlus(_DySampleBase):
    """DySample+ (``lp`` style, 4 groups, dynamic scope): the README's ``lpg4ds``."""

    dyscope = True
