"""The model a train cell's configuration describes, and the parameters its operator adds."""

from __future__ import annotations

from typing import Any

import torch


def build_cell_model(config: dict[str, Any], num_classes: int) -> torch.nn.Module:
    """The model of a train cell (also used by the suite checks on the meta device, by the cost
    probe and by reports to reload ``model.pt``)."""
    from upbench.architectures import build_model

    plain = config["architecture"] == "plain"
    return build_model(
        config["architecture"],
        operator=config["operator"],
        num_classes=num_classes,
        preset=config["preset"],
        scale=config["scale"] if plain else None,
        protocol=None if plain else config["protocol"],
        operator_options=config["options"],
    )


def operator_params(model: torch.nn.Module) -> int:
    """Parameters of everything that exists only because of the operator (its instances and the
    plain model's image stem of a guided operator; see ``SegmentationModel.operator_modules``)."""
    from upbench.profiling import count_params
    from upbench.upsampler import Upsampler

    modules = model.operator_modules() if hasattr(model, "operator_modules") else None
    if modules is None:
        modules = [m for m in model.modules() if isinstance(m, Upsampler)]
    return sum(count_params(m)["total"] for m in modules)
