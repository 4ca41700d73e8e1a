"""The one interface every upsampler implements.

An upsampler is an ``nn.Module`` built as ``Op(in_channels, scale, *, guide_channels=None,
**options)`` and called as ``op(x, guide=None, output_size=None)``:

* ``x`` is the low-resolution (LR) feature, ``Tensor[B, C, h, w]`` with ``C == in_channels``;
* ``guide`` is the high-resolution (HR) feature, ``Tensor[B, C_g, s*h, s*w]`` with
  ``C_g == guide_channels``. Guided operators need it; unguided ones accept and ignore it, so a
  decoder calls every operator the same way;
* the result is ``Tensor[B, C, s*h, s*w]``: the channels of ``x`` at ``scale`` times its size.

Arbitrary output sizes: an operator registered with ``any_size=True`` also produces sizes that are
not an integer multiple of ``x`` (e.g. 16x16 ViT-S/14 features of a 224 px image to 256x256, or
40x23 to 80x45). A guided one then returns the guide's size (the guide may have any size); an
unguided one returns ``output_size`` (default ``(s*h, s*w)``). Its ``upsample`` receives the target
size as a third argument. The other operators accept ``output_size`` only when it equals
``(s*h, s*w)`` and otherwise raise a one-line :class:`~upbench.errors.InputShapeError`.

Subclasses implement :meth:`Upsampler.upsample`; the base :meth:`Upsampler.forward` checks the
inputs first and raises :class:`~upbench.errors.InputShapeError` with a message that names the
operator, what it got and what it expected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from upbench.errors import InputShapeError, UnsupportedScaleError

#: The two operator families (:attr:`OperatorInfo.family`).
FAMILIES = ("segmentation", "task-agnostic")


@dataclass(frozen=True)
class OperatorInfo:
    """Metadata of a registered operator (set by :func:`upbench.register_operator`).

    Attributes:
        name: registry key, lowercase snake_case.
        title: human-readable name with the paper's capitalisation.
        guided: whether the operator needs the HR ``guide``.
        guide_passthrough: whether the output can carry guide content directly (a term that is a
            function of the guide alone, as FADE's gate ``g * guide``), rather than only LR
            features weighted by guide-derived coefficients (SAPA, ReSFU). Such an operator can
            hand the guide to the classifier and bypass upsampling; compare it with
            ``guided_bilinear``.
        learnable: whether the operator has learnable parameters with its default options.
        paper: reference (e.g. ``"arXiv:2407.02283"``); empty for textbook baselines.
        scales: supported integer scales, or ``None`` for any integer >= 2.
        any_size: whether the operator produces any output size (not only ``scale`` times the input):
            the guide's size (guided) or ``output_size`` (unguided).
        family: ``"segmentation"`` (trained inside a segmentation head: CARAFE, FADE, SAPA, DySample,
            ReSFU and the baselines) or ``"task-agnostic"`` (upsamplers of frozen vision-foundation-model
            features guided by the image: FeatUp, JAFAR, LoftUp, AnyUp, NAF).
        code: the official code this implementation mirrors (repository, commit, file).
        conventions: conventions that change results (LR window, border, align_corners, ...).
        deviations: every place where the implementation departs from the official code.
        notes: anything else a user should know (exactness of gradients, costs, ...).
        aliases: other names that resolve to this operator.
        options: accepted options and their defaults (derived from the constructor).
        origin: ``"builtin"`` or ``"plugin:<entry point>"``.
        module: the Python module that defines the class.
    """

    name: str
    title: str
    guided: bool
    guide_passthrough: bool = False
    learnable: bool = True
    paper: str = ""
    scales: tuple[int, ...] | None = None
    any_size: bool = False
    family: Literal["segmentation", "task-agnostic"] = "segmentation"
    code: str = ""
    conventions: Mapping[str, str] = field(default_factory=dict)
    deviations: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    origin: str = "builtin"
    module: str = ""

    def supports_scale(self, scale: int) -> bool:
        """True if ``scale`` is an integer >= 2 that this operator supports."""
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 2:
            return False
        return self.scales is None or scale in self.scales

    def scales_text(self) -> str:
        """The supported scales as text, e.g. ``"2"`` or ``"any integer >= 2"``."""
        return "any integer >= 2" if self.scales is None else ", ".join(map(str, self.scales))


def check_scale(info: OperatorInfo, scale: Any) -> None:
    """Raise :class:`UnsupportedScaleError` unless ``scale`` is supported by the operator."""
    if isinstance(scale, bool) or not isinstance(scale, int):
        raise UnsupportedScaleError(
            f"operator '{info.name}': scale must be an integer, got {scale!r} "
            f"({type(scale).__name__}); supported: {info.scales_text()}"
        )
    if not info.supports_scale(scale):
        raise UnsupportedScaleError(
            f"operator '{info.name}' does not support scale {scale}; supported: {info.scales_text()}"
        )


def _is_tracing() -> bool:
    """True while fvcore/``torch.jit.trace`` or ``torch.compile`` trace the module."""
    if torch.jit.is_tracing():
        return True
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())


def _autocast_enabled(x: Tensor) -> bool:
    """True if autocast is active for the device type of ``x``."""
    try:
        return torch.is_autocast_enabled(x.device.type)
    except TypeError:  # torch < 2.4 has no device-type argument
        return torch.is_autocast_enabled()


def _shape(t: Tensor) -> str:
    return "(" + ", ".join(str(d) for d in t.shape) + ")"


class Upsampler(nn.Module):
    """Base class of all upsamplers: stores the sizes and validates inputs.

    Args:
        in_channels: channels ``C`` of the LR feature ``x`` (and of the output).
        scale: integer upsampling ratio ``s``.
        guide_channels: channels ``C_g`` of the HR guide; guided operators default it to
            ``default_guide_channels`` or, when that is None, to ``in_channels`` (as the official
            ReSFU, SAPA and FADE do); unguided operators ignore it.
    """

    info: ClassVar[OperatorInfo]
    #: The guide width when none is given (None: ``in_channels``); 3 for operators guided by the RGB image.
    default_guide_channels: ClassVar[int | None] = None

    def __init__(self, in_channels: int, scale: int, *, guide_channels: int | None = None) -> None:
        super().__init__()
        info = getattr(type(self), "info", None)
        name = info.name if info is not None else type(self).__name__
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise InputShapeError(f"operator '{name}': in_channels must be a positive integer, got {in_channels!r}")
        if info is not None:
            check_scale(info, scale)
        guided = info.guided if info is not None else False
        if guided:
            if guide_channels is None:
                default = type(self).default_guide_channels
                guide_channels = in_channels if default is None else default
            if isinstance(guide_channels, bool) or not isinstance(guide_channels, int) or guide_channels < 1:
                raise InputShapeError(
                    f"operator '{name}': guide_channels must be a positive integer, got {guide_channels!r}"
                )
        self.in_channels = in_channels
        self.scale = scale
        self.guide_channels = guide_channels if guided else None

    @property
    def name(self) -> str:
        """The registry name of this operator."""
        return type(self).info.name

    def forward(self, x: Tensor, guide: Tensor | None = None, output_size: tuple[int, int] | None = None) -> Tensor:
        """Upsample ``x`` (``Tensor[B, C, h, w]``) by ``scale`` (or to the guide's size / ``output_size``
        for ``any_size`` operators), guided by ``guide`` if needed."""
        info = type(self).info
        if not _is_tracing():
            self.check_inputs(x, guide, output_size)
        guide = guide if info.guided else None
        if not info.any_size:
            return self.upsample(x, guide)
        return self.upsample(x, guide, self.target_size(x, guide, output_size))

    def target_size(
        self, x: Tensor, guide: Tensor | None, output_size: tuple[int, int] | None = None
    ) -> tuple[int, int]:
        """The output size ``(H, W)``: the guide's (guided), else ``output_size``, else ``scale`` x ``x``'s."""
        if guide is not None and type(self).info.guided:
            return int(guide.shape[-2]), int(guide.shape[-1])
        if output_size is not None:
            return int(output_size[0]), int(output_size[1])
        return self.scale * int(x.shape[-2]), self.scale * int(x.shape[-1])

    def upsample(self, x: Tensor, guide: Tensor | None, *size: tuple[int, int]) -> Tensor:
        """The operator itself; inputs are already validated. Implemented by subclasses.

        ``any_size`` operators are called as ``upsample(x, guide, (H, W))``, the others as
        ``upsample(x, guide)``.
        """
        raise NotImplementedError

    def check_inputs(self, x: Tensor, guide: Tensor | None, output_size: tuple[int, int] | None = None) -> None:
        """Raise :class:`InputShapeError` naming the problem if ``x``/``guide``/``output_size`` do not fit."""
        name = self.name
        info = type(self).info
        if not isinstance(x, Tensor):
            raise InputShapeError(f"operator '{name}': x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise InputShapeError(f"operator '{name}': x must be (B, C, h, w), got shape {_shape(x)}")
        if not x.is_floating_point():
            raise InputShapeError(f"operator '{name}': x must be a floating-point tensor, got {x.dtype}")
        if x.shape[1] != self.in_channels:
            raise InputShapeError(
                f"operator '{name}' was built for in_channels={self.in_channels} but x has "
                f"{x.shape[1]} channels (shape {_shape(x)})"
            )
        self._check_output_size(x, guide, output_size)
        if not type(self).info.guided:
            return
        b, _, h, w = x.shape
        s = self.scale
        if guide is None:
            raise InputShapeError(
                f"operator '{name}' is guided and needs guide=<HR feature (B, {self.guide_channels}, "
                f"{s * h}, {s * w})>; got None"
            )
        if not isinstance(guide, Tensor) or guide.dim() != 4:
            got = _shape(guide) if isinstance(guide, Tensor) else type(guide).__name__
            raise InputShapeError(f"operator '{name}': guide must be (B, C_g, H, W), got {got}")
        if guide.shape[0] != b:
            raise InputShapeError(f"operator '{name}': guide has batch {guide.shape[0]} but x has batch {b}")
        if guide.shape[1] != self.guide_channels:
            raise InputShapeError(
                f"operator '{name}' was built for guide_channels={self.guide_channels} but the guide has "
                f"{guide.shape[1]} channels"
            )
        if tuple(guide.shape[-2:]) != (s * h, s * w) and not info.any_size:
            raise InputShapeError(
                f"operator '{name}': guide is {guide.shape[-2]}x{guide.shape[-1]} but x ({h}x{w}) "
                f"x scale {s} needs {s * h}x{s * w}"
            )
        if guide.dtype != x.dtype and not _autocast_enabled(x):
            raise InputShapeError(
                f"operator '{name}': guide is {guide.dtype} but x is {x.dtype}; use the same dtype (or autocast)"
            )
        if guide.device != x.device:
            raise InputShapeError(f"operator '{name}': guide is on {guide.device} but x is on {x.device}")

    def _check_output_size(self, x: Tensor, guide: Tensor | None, output_size: tuple[int, int] | None) -> None:
        if output_size is None:
            return
        name, info = self.name, type(self).info
        ok = isinstance(output_size, (tuple, list, torch.Size)) and len(output_size) == 2
        if not ok or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in output_size):
            raise InputShapeError(
                f"operator '{name}': output_size must be two positive integers (H, W), got {output_size!r}"
            )
        size = (int(output_size[0]), int(output_size[1]))
        h, w = x.shape[-2:]
        if not info.any_size and size != (self.scale * h, self.scale * w):
            raise InputShapeError(
                f"operator '{name}' only produces scale x the input: x ({h}x{w}) x scale {self.scale} = "
                f"{self.scale * h}x{self.scale * w}, not output_size {size[0]}x{size[1]}"
            )
        if info.guided and isinstance(guide, Tensor) and guide.dim() == 4 and tuple(guide.shape[-2:]) != size:
            raise InputShapeError(
                f"operator '{name}': output_size {size[0]}x{size[1]} differs from the guide's size "
                f"{guide.shape[-2]}x{guide.shape[-1]} (a guided operator returns the guide's size)"
            )

    def param_groups(self) -> list[dict[str, Any]]:
        """Parameter groups with a learning-rate multiplier ``lr_mult`` each.

        A trainer multiplies its base learning rate by ``lr_mult`` for every group. Operators
        whose official training uses a different rate for some parameters (ReSFU's ``lr_mult``)
        override this; by default all parameters share multiplier 1.
        """
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params, "lr_mult": 1.0}] if params else []

    def extra_repr(self) -> str:
        text = f"in_channels={self.in_channels}, scale={self.scale}"
        if self.guide_channels is not None:
            text += f", guide_channels={self.guide_channels}"
        return text
