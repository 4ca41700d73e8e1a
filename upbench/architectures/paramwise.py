"""Optimizer parameter groups with per-module learning-rate and decay multipliers.

Two sources of multipliers combine:

- operator groups (:meth:`upbench.Upsampler.param_groups`, e.g. ReSFU's ``param_lr_mult``);
- ``custom_keys`` with the semantics of mmengine's ``paramwise_cfg`` (as mmseg's SegFormer config
  ``custom_keys={'pos_block': dict(decay_mult=0.), 'norm': dict(decay_mult=0.), 'head':
  dict(lr_mult=10.)}``): the keys are tried longest first (ties alphabetically) and the first
  that is a substring of the parameter's **official name** gives its ``lr_mult`` and ``decay_mult``
  (default 1); only one key applies to a parameter. mmseg names are ``backbone.<key in the
  checkpoint layout>`` for MiT/ViT encoders (:func:`~upbench.architectures.pretrained.official_param_names`:
  mmseg 1.x or the original SegFormer code) and ``decode_head.<upbench name>`` for the head, so
  ``'head'`` covers the upsamplers inside the decode head, and ``'norm'`` misses MiT's stage norms
  in mmseg 1.x (``layers.{i}.2``) but reaches them in the original code (``norm{i}``).

``auto_no_decay`` (upbench's default) also removes weight decay from biases, other 1-D tensors,
position embeddings and the class token; mmseg's configs do not (set it false to reproduce them).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from upbench.architectures.pretrained import official_param_names

_AUTO_NO_DECAY = ("pos_embed", "cls_pos", "cls_token")
MULTIPLIERS = ("lr_mult", "decay_mult")


def sorted_custom_keys(custom_keys: dict[str, Any]) -> list[str]:
    """mmengine's order: alphabetical, then longest first (a stable sort)."""
    return sorted(sorted(custom_keys), key=len, reverse=True)


def official_names(model: nn.Module, layout: str = "mmseg") -> dict[str, str]:
    """``{upbench parameter name: official parameter name}`` of a SegmentationModel.

    ``layout``: ``"mmseg"`` (mmseg 1.x, ReSFU's code) or ``"segformer"`` (the original NVlabs
    SegFormer code on mmseg 0.x, used by FADE, SAPA and DySample).
    """
    encoder = getattr(model, "encoder", None)
    enc_map = official_param_names(encoder, layout) if encoder is not None else {}
    names: dict[str, str] = {}
    for name, _ in model.named_parameters():
        if name.startswith("encoder."):
            inner = name[len("encoder.") :]
            names[name] = "backbone." + enc_map.get(inner, inner)
        elif name.startswith("head."):
            names[name] = "decode_head." + name[len("head.") :]
        else:
            names[name] = name
    return names


def param_groups(
    model: nn.Module,
    base_lr: float,
    weight_decay: float,
    *,
    custom_keys: dict[str, dict[str, float]] | None = None,
    custom_keys_names: str = "mmseg",
    auto_no_decay: bool = True,
) -> list[dict[str, Any]]:
    """Groups for a ``torch.optim`` optimizer: ``lr`` and ``weight_decay`` already multiplied.

    ``custom_keys`` match the parameter names of the ``custom_keys_names`` code base (see
    :func:`official_names`).

    Every group carries ``lr_mult`` (operator x custom key), ``decay_mult`` and a ``name``
    (``operator{i}.{j}`` or ``model``, then ``.<custom key>`` and ``.no_decay`` where they apply).
    """
    custom_keys = dict(custom_keys or {})
    keys = sorted_custom_keys(custom_keys)
    official = official_names(model, custom_keys_names)
    op_mult: dict[int, tuple[float, str]] = {}
    upsamplers = model.upsamplers() if hasattr(model, "upsamplers") else []
    for i, op in enumerate(upsamplers):
        for j, g in enumerate(op.param_groups()):
            for p in g["params"]:
                op_mult.setdefault(id(p), (float(g.get("lr_mult", 1.0)), f"operator{i}.{j}"))
    groups: dict[tuple[str, float, float], dict[str, Any]] = {}
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        mult, base = op_mult.get(id(p), (1.0, "model"))
        lr_mult, decay_mult = mult, 1.0
        key = next((k for k in keys if k in official.get(name, name)), None)
        if key is not None:
            lr_mult *= float(custom_keys[key].get("lr_mult", 1.0))
            decay_mult = float(custom_keys[key].get("decay_mult", 1.0))
            base += f".{key}"
        if auto_no_decay and (p.dim() <= 1 or name.endswith(_AUTO_NO_DECAY)):
            decay_mult = 0.0
        label = base + (".no_decay" if decay_mult == 0.0 else "")
        group = groups.setdefault(
            (label, lr_mult, decay_mult),
            {
                "params": [],
                "lr": base_lr * lr_mult,
                "weight_decay": weight_decay * decay_mult,
                "lr_mult": lr_mult,
                "decay_mult": decay_mult,
                "name": label,
            },
        )
        group["params"].append(p)
    return list(groups.values())
