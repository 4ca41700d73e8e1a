"""Options of the segmentation metrics, validated once into a frozen dataclass."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import cache
from typing import Any

from upbench.errors import InvalidOptionError
from upbench.validation import NonNegativeFloat, PositiveInt, check_fields, raise_if

#: Floor of the diagonal-relative BF tolerance, in pixels (a 4-neighbour always matches).
BF_MIN_TOLERANCE_PX = 1.0


@dataclass(frozen=True)
class MetricOptions:
    """Tolerances of the boundary metrics (see :mod:`upbench.metrics` for the definitions).

    Attributes:
        bf_tolerance: BF distance tolerance as a fraction of the image diagonal (Csurka et al.:
            0.75 %), never less than ``BF_MIN_TOLERANCE_PX`` (1 px). Below one pixel only
            coinciding contour pixels match, so a boundary one pixel off would score BF 0 at
            64 px (0.75 % of the diagonal is 0.68 px) but 1 at 128 px (1.36 px); with the floor
            a one-pixel shift matches at every size, and the tolerance is the paper's from
            about 94 px on. The tolerance used is returned as ``BF_tolerance_px``.
        bf_tolerance_px: a fixed BF tolerance in pixels; overrides ``bf_tolerance`` when set.
        biou_dilation_ratio: Boundary IoU band width as a fraction of the image diagonal (Cheng
            et al.: 2 %); the width in pixels is ``max(1, round(ratio * diagonal))``.
        biou_fixed_px: band width in pixels of the fixed-width variant reported as ``BIoU_3px``.
        boundary: compute BF and Boundary IoU at all; ``False`` reports them as NaN (faster).
    """

    bf_tolerance: NonNegativeFloat = 0.0075
    bf_tolerance_px: NonNegativeFloat | None = None
    biou_dilation_ratio: NonNegativeFloat = 0.02
    biou_fixed_px: PositiveInt = 3
    boundary: bool = True

    def __post_init__(self) -> None:
        raise_if(check_fields(self, ""), InvalidOptionError)
        # plain floats, so that options compare, hash and serialise the same whatever their source
        object.__setattr__(self, "bf_tolerance", float(self.bf_tolerance))
        object.__setattr__(self, "biou_dilation_ratio", float(self.biou_dilation_ratio))
        if self.bf_tolerance_px is not None:
            object.__setattr__(self, "bf_tolerance_px", float(self.bf_tolerance_px))

    def bf_radius(self, height: int, width: int) -> float:
        """BF tolerance in pixels for an image of this size (``bf_tolerance_px`` if set, else
        ``max(1, bf_tolerance * diagonal)``)."""
        if self.bf_tolerance_px is not None:
            return float(self.bf_tolerance_px)
        return max(BF_MIN_TOLERANCE_PX, self.bf_tolerance * math.hypot(height, width))

    def biou_width(self, height: int, width: int) -> int:
        """Boundary IoU band width in pixels, as in the reference ``mask_to_boundary``."""
        return max(1, int(round(self.biou_dilation_ratio * math.hypot(height, width))))


@cache
def default_options() -> MetricOptions:
    """``MetricOptions()``, built (and validated) once."""
    return MetricOptions()


def parse_options(options: dict[str, Any]) -> MetricOptions:
    """Build :class:`MetricOptions` from keyword options, naming any unknown one."""
    known = {f.name for f in fields(MetricOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InvalidOptionError(
            f"unknown metric option(s) {', '.join(unknown)}; valid options: {', '.join(sorted(known))}"
        )
    return MetricOptions(**options)
