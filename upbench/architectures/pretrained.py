"""ImageNet-pretrained encoders from local files, with explicit key maps per official layout.

Layouts (detected from the keys; every name comes from the official code or converter):

- MiT ``mmseg``: the files mmseg's SegFormer configs load (``mit_b1_20220624-02e5a6a1.pth``),
  written by ``tools/model_converters/mit2mmseg.py``: ``layers.{i}.0`` patch embedding
  (``projection``, ``norm``), ``layers.{i}.1.{j}`` blocks (``norm1``, ``attn.attn.in_proj_*`` =
  [q; kv], ``attn.attn.out_proj``, ``attn.sr``, ``attn.norm``, ``norm2``, ``ffn.layers.{0,1,4}``
  as 1x1/3x3 convolutions), ``layers.{i}.2`` the stage norm.
- MiT ``segformer``: the original NVlabs release (``mit_b1.pth``): ``patch_embed{i+1}``,
  ``block{i+1}.{j}`` (``attn.q``, ``attn.kv``, ``attn.proj``, ``mlp.fc1``, ``mlp.dwconv.dwconv``,
  ``mlp.fc2``), ``norm{i+1}``; the classifier ``head.*`` is ignored.
- ViT ``mmseg``: Segmenter's files (``vit_small_p16_384_20220308-410f6037.pth``), written by
  ``tools/model_converters/vit2mmseg.py``: ``patch_embed.projection``, ``cls_token``,
  ``pos_embed`` (1, 1 + N, C), ``layers.{j}`` (``ln1``, ``attn.attn.in_proj_*``,
  ``attn.attn.out_proj``, ``ln2``, ``ffn.layers.0.0``, ``ffn.layers.1``), final ``ln1``.
- ViT ``timm``: timm's ``VisionTransformer`` (``.pth``/``.bin``/``.safetensors``):
  ``patch_embed.proj``, ``blocks.{j}`` (``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``,
  ``mlp.fc1``, ``mlp.fc2``), final ``norm``; ``head``/``fc_norm``/``pre_logits`` are ignored.
  The big_vision/augreg ``.npz`` files are read in this layout (:func:`augreg_to_timm`).
- MiT / ViT ``upbench``: the state dict of upbench's own encoder (``stages.0.embed.proj.weight``,
  ``blocks.0.qkv.weight``), as written by :mod:`upbench.pretraining` for the shipped encoders.

A checkpoint's position embedding on another grid (24 x 24 for the 384 px files) is resized to
the model's grid as mmseg's ``VisionTransformer.init_weights`` does (``resize_pos_embed`` with
the preset's interpolation, bicubic for Segmenter). Missing and unexpected keys are reported; a
tensor of the wrong shape is a :class:`ConfigError` naming both keys and shapes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from upbench.architectures.mit import MiT
from upbench.architectures.vit import ViT
from upbench.errors import ConfigError

#: upbench's own encoder state dicts (the weights :mod:`upbench.pretraining` writes), loaded as they are.
UPBENCH_LAYOUT = "upbench"
#: Keys of classification checkpoints that a segmentation encoder does not use.
IGNORED_PREFIXES = ("head.", "fc_norm.", "pre_logits.")
#: Wrappers around the state dict in training checkpoints (timm, DeiT, mmengine).
WRAPPERS = ("state_dict", "model", "module")

#: ``(target key in upbench's encoder, source key in the checkpoint, transform or None)``
Rule = tuple[str, str, Callable[[Tensor], Tensor] | None]


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did: the layout found and the keys it could not match."""

    path: str
    layout: str
    loaded: int
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for logs: counts and the first few missing / unexpected keys."""
        text = f"pretrained {self.path} ({self.layout} layout): {self.loaded} tensors loaded"
        for name, keys in (("resized", self.resized), ("missing", self.missing), ("unexpected", self.unexpected)):
            if keys:
                text += f"; {len(keys)} {name}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
        return text


# --------------------------------------------------------------------------- reading
def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """The flat ``{key: tensor}`` of a ``.pth``/``.pt``/``.bin`` or ``.safetensors`` file.

    Unwraps ``state_dict``/``model``/``module`` wrappers and an mmseg segmentor's ``backbone.``
    prefix (its other parts are kept and later reported as unexpected).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"pretrained checkpoint '{path}' does not exist")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ConfigError(
                f"pretrained checkpoint '{path}' is a .safetensors file: install safetensors "
                "(pip install -e '.[pretrained]') or convert it to .pth"
            ) from None
        state: object = load_file(str(path))
    elif path.suffix == ".npz":
        try:
            with np.load(path) as arrays:
                state = augreg_to_timm({k: arrays[k] for k in arrays.files})
        except (OSError, ValueError) as err:
            raise ConfigError(f"pretrained checkpoint '{path}' cannot be read: {err}".splitlines()[0]) from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unreadable file is one user-facing error
            raise ConfigError(f"pretrained checkpoint '{path}' cannot be read: {err}".splitlines()[0]) from None
    while isinstance(state, dict) and len(state) and any(w in state for w in WRAPPERS):
        inner = next((state[w] for w in WRAPPERS if isinstance(state.get(w), dict)), None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConfigError(f"pretrained checkpoint '{path}' holds no state dict of tensors")
    if any(k.startswith("backbone.") for k in state):
        state = {(k[len("backbone.") :] if k.startswith("backbone.") else k): v for k, v in state.items()}
    return dict(state)


def augreg_to_timm(arrays: dict[str, np.ndarray]) -> dict[str, Tensor]:
    """A big_vision / augreg ViT ``.npz`` (Flax names) in timm's layout.

    Names as read by timm's ``_load_weights``: ``embedding/kernel`` (HWIO), ``cls``,
    ``Transformer/posembed_input/pos_embedding``, ``Transformer/encoder_norm``,
    ``Transformer/encoderblock_{j}/`` ``LayerNorm_0``, ``MultiHeadDotProductAttention_1/{query,key,
    value}`` (kernel (C, heads, head_dim)), ``.../out`` (kernel (heads, head_dim, C)),
    ``LayerNorm_2``, ``MlpBlock_3/Dense_{0,1}`` (kernel (in, out)). Other arrays keep their names
    (``head``/``pre_logits`` become ``head.*``/``pre_logits.*`` and are ignored).
    """
    t = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in arrays.items()}
    out: dict[str, Tensor] = {}
    used: set[str] = set()

    def take(key: str) -> Tensor:
        used.add(key)
        return t[key]

    if "embedding/kernel" in t:
        out["patch_embed.proj.weight"] = take("embedding/kernel").permute(3, 2, 0, 1).contiguous()
        out["patch_embed.proj.bias"] = take("embedding/bias")
    for src, dst in (("cls", "cls_token"), ("Transformer/posembed_input/pos_embedding", "pos_embed")):
        if src in t:
            out[dst] = take(src)
    for p, q in (("scale", "weight"), ("bias", "bias")):
        if f"Transformer/encoder_norm/{p}" in t:
            out[f"norm.{q}"] = take(f"Transformer/encoder_norm/{p}")
    j = 0
    while f"Transformer/encoderblock_{j}/LayerNorm_0/scale" in t:
        src, dst = f"Transformer/encoderblock_{j}", f"blocks.{j}"
        for norm, name in (("LayerNorm_0", "norm1"), ("LayerNorm_2", "norm2")):
            out[f"{dst}.{name}.weight"] = take(f"{src}/{norm}/scale")
            out[f"{dst}.{name}.bias"] = take(f"{src}/{norm}/bias")
        att = f"{src}/MultiHeadDotProductAttention_1"
        qkv = [take(f"{att}/{n}/kernel") for n in ("query", "key", "value")]
        out[f"{dst}.attn.qkv.weight"] = torch.cat([k.flatten(1).T for k in qkv])
        out[f"{dst}.attn.qkv.bias"] = torch.cat([take(f"{att}/{n}/bias").flatten() for n in ("query", "key", "value")])
        out[f"{dst}.attn.proj.weight"] = take(f"{att}/out/kernel").flatten(0, 1).T.contiguous()
        out[f"{dst}.attn.proj.bias"] = take(f"{att}/out/bias")
        for dense, name in (("Dense_0", "fc1"), ("Dense_1", "fc2")):
            out[f"{dst}.mlp.{name}.weight"] = take(f"{src}/MlpBlock_3/{dense}/kernel").T.contiguous()
            out[f"{dst}.mlp.{name}.bias"] = take(f"{src}/MlpBlock_3/{dense}/bias")
        j += 1
    for key, value in t.items():
        if key not in used:
            out[key.replace("/", ".")] = value
    return out


# --------------------------------------------------------------------------- key maps
def _conv_to_linear(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], t.shape[1])  # (out, in, 1, 1) -> (out, in)


def _rows(start: int, stop: int | None) -> Callable[[Tensor], Tensor]:
    return lambda t: t[start:stop]


def mit_rules(encoder: MiT, layout: str) -> list[Rule]:
    """Key map of a MiT encoder from the ``mmseg`` or ``segformer`` layout."""
    rules: list[Rule] = []
    for i, stage in enumerate(encoder.stages):
        dim = encoder.dims[i]
        t = f"stages.{i}"
        if layout == "mmseg":
            embed, block, stage_norm = f"layers.{i}.0", f"layers.{i}.1", f"layers.{i}.2"
            proj = f"{embed}.projection"
        else:
            embed, block, stage_norm = f"patch_embed{i + 1}", f"block{i + 1}", f"norm{i + 1}"
            proj = f"{embed}.proj"
        for p in ("weight", "bias"):
            rules += [(f"{t}.embed.proj.{p}", f"{proj}.{p}", None), (f"{t}.embed.norm.{p}", f"{embed}.norm.{p}", None)]
            rules.append((f"{t}.norm.{p}", f"{stage_norm}.{p}", None))
        for j, blk in enumerate(stage["blocks"]):
            tb, sb = f"{t}.blocks.{j}", f"{block}.{j}"
            for p in ("weight", "bias"):
                rules += [(f"{tb}.norm1.{p}", f"{sb}.norm1.{p}", None), (f"{tb}.norm2.{p}", f"{sb}.norm2.{p}", None)]
                if layout == "mmseg":
                    in_proj = f"{sb}.attn.attn.in_proj_{p}"
                    rules += [
                        (f"{tb}.attn.q.{p}", in_proj, _rows(0, dim)),
                        (f"{tb}.attn.kv.{p}", in_proj, _rows(dim, None)),
                        (f"{tb}.attn.proj.{p}", f"{sb}.attn.attn.out_proj.{p}", None),
                        (f"{tb}.ffn.fc1.{p}", f"{sb}.ffn.layers.0.{p}", _conv_to_linear if p == "weight" else None),
                        (f"{tb}.ffn.dwconv.{p}", f"{sb}.ffn.layers.1.{p}", None),
                        (f"{tb}.ffn.fc2.{p}", f"{sb}.ffn.layers.4.{p}", _conv_to_linear if p == "weight" else None),
                    ]
                else:
                    rules += [
                        (f"{tb}.attn.q.{p}", f"{sb}.attn.q.{p}", None),
                        (f"{tb}.attn.kv.{p}", f"{sb}.attn.kv.{p}", None),
                        (f"{tb}.attn.proj.{p}", f"{sb}.attn.proj.{p}", None),
                        (f"{tb}.ffn.fc1.{p}", f"{sb}.mlp.fc1.{p}", None),
                        (f"{tb}.ffn.dwconv.{p}", f"{sb}.mlp.dwconv.dwconv.{p}", None),
                        (f"{tb}.ffn.fc2.{p}", f"{sb}.mlp.fc2.{p}", None),
                    ]
                if blk.attn.sr is not None:
                    rules += [
                        (f"{tb}.attn.sr.{p}", f"{sb}.attn.sr.{p}", None),
                        (f"{tb}.attn.norm.{p}", f"{sb}.attn.norm.{p}", None),
                    ]
    return rules


def resize_pos_embed(grid: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """``(1, C, h, w) -> (1, C, *size)`` as mmseg's ``resize_pos_embed`` (align_corners=False)."""
    if tuple(grid.shape[-2:]) == tuple(size):
        return grid
    return F.interpolate(grid, size=size, mode=mode, align_corners=False)


def _pos_grid(target: tuple[int, int], mode: str) -> Callable[[Tensor], Tensor]:
    """A checkpoint ``pos_embed`` (1, 1 + N, C) -> upbench's (1, C, g, g) on the model's grid."""

    def convert(t: Tensor) -> Tensor:
        n = t.shape[1] - 1
        side = math.isqrt(n)
        if t.dim() != 3 or side * side != n:
            raise ConfigError(f"pos_embed of shape {tuple(t.shape)} is not (1, 1 + g*g, C) with a class token")
        grid = t[:, 1:].reshape(1, side, side, t.shape[2]).permute(0, 3, 1, 2)
        return resize_pos_embed(grid.float(), target, mode).to(t.dtype)

    return convert


def vit_rules(encoder: ViT, layout: str) -> list[Rule]:
    """Key map of a ViT/16 encoder from the ``mmseg`` or ``timm`` layout."""
    grid = tuple(encoder.pos_embed.shape[-2:])
    rules: list[Rule] = [
        ("cls_token", "cls_token", None),
        ("cls_pos", "pos_embed", lambda t: t[:, :1]),
        ("pos_embed", "pos_embed", _pos_grid(grid, encoder.pos_interpolation)),  # type: ignore[arg-type]
    ]
    mm = layout == "mmseg"
    names = {
        "patch_embed": "patch_embed.projection" if mm else "patch_embed.proj",
        "norm1": "ln1" if mm else "norm1",
        "qkv": "attn.attn.in_proj_" if mm else "attn.qkv.",
        "proj": "attn.attn.out_proj" if mm else "attn.proj",
        "norm2": "ln2" if mm else "norm2",
        "mlp.0": "ffn.layers.0.0" if mm else "mlp.fc1",
        "mlp.2": "ffn.layers.1" if mm else "mlp.fc2",
        "norm": "ln1" if mm else "norm",
    }
    block = "layers" if mm else "blocks"
    for p in ("weight", "bias"):
        rules += [(f"{k}.{p}", f"{names[k]}.{p}", None) for k in ("patch_embed", "norm")]
        for j in range(len(encoder.blocks)):
            tb, sb = f"blocks.{j}", f"{block}.{j}"
            rules.append((f"{tb}.qkv.{p}", f"{sb}.{names['qkv']}{p}", None))
            per_block = ("norm1", "proj", "norm2", "mlp.0", "mlp.2")
            rules += [(f"{tb}.{k}.{p}", f"{sb}.{names[k]}.{p}", None) for k in per_block]
    return rules


def _family_and_layout(encoder: nn.Module, keys: set[str], path: str) -> tuple[str, str]:
    if isinstance(encoder, MiT):
        family, layouts = "MiT", {
            "mmseg": "layers.0.0.projection.weight",
            "segformer": "patch_embed1.proj.weight",
            UPBENCH_LAYOUT: "stages.0.embed.proj.weight",
        }
    elif isinstance(encoder, ViT):
        family, layouts = "ViT", {
            "mmseg": "layers.0.ln1.weight",
            UPBENCH_LAYOUT: "blocks.0.qkv.weight",
            "timm": "blocks.0.norm1.weight",
        }
    else:
        raise ConfigError(f"pretrained weights load into MiT and ViT encoders only, not {type(encoder).__name__}")
    for layout, probe in layouts.items():
        if probe in keys:
            return family, layout
    expected = " or ".join(f"'{probe}' ({layout})" for layout, probe in layouts.items())
    raise ConfigError(f"pretrained checkpoint '{path}' is not a {family} checkpoint: it has no key {expected}")


def encoder_rules(encoder: nn.Module, layout: str) -> list[Rule]:
    """The key map of ``encoder`` (a :class:`MiT` or :class:`ViT`) from ``layout``."""
    if layout == UPBENCH_LAYOUT:
        return [(key, key, None) for key in encoder.state_dict()]
    return mit_rules(encoder, layout) if isinstance(encoder, MiT) else vit_rules(encoder, layout)  # type: ignore[arg-type]


#: Layouts whose parameter names ``paramwise_cfg`` custom keys can be matched against.
NAME_LAYOUTS = ("mmseg", "segformer")


def official_param_names(encoder: nn.Module, layout: str = "mmseg") -> dict[str, str]:
    """``{upbench parameter name: official name}`` of a MiT/ViT encoder (empty for others).

    ``paramwise_cfg`` custom keys match these names: in mmseg MiT's stage norms are
    ``layers.{i}.2`` (``'norm'`` does not reach them), in the original SegFormer code they are
    ``norm{i}`` (it does). ViT encoders always use mmseg's names (Segmenter is mmseg code).
    """
    if layout not in NAME_LAYOUTS:
        raise ConfigError(f"unknown parameter-name layout '{layout}'; choose from {', '.join(NAME_LAYOUTS)}")
    if not isinstance(encoder, MiT | ViT):
        return {}
    layout = layout if isinstance(encoder, MiT) else "mmseg"
    return {target: source for target, source, _ in encoder_rules(encoder, layout)}


# --------------------------------------------------------------------------- loading
def load_pretrained(model: nn.Module, path: str | Path) -> LoadReport:
    """Load the encoder weights of ``model`` (a SegmentationModel or a bare MiT/ViT) from ``path``."""
    encoder = getattr(model, "encoder", model)
    state = read_checkpoint(path)
    family, layout = _family_and_layout(encoder, set(state), str(path))
    own = encoder.state_dict()
    new: dict[str, Tensor] = {}
    used: set[str] = set()
    report = LoadReport(str(path), layout, 0)
    for target, source, transform in encoder_rules(encoder, layout):
        if source not in state:
            report.missing.append(target)
            continue
        used.add(source)
        tensor = state[source]
        value = transform(tensor) if transform is not None else tensor
        if target == "pos_embed" and tuple(tensor.shape[1:2]) != (1 + own[target].shape[-2] * own[target].shape[-1],):
            report.resized.append(f"pos_embed {tuple(tensor.shape)} -> {tuple(own[target].shape)}")
        if value.shape != own[target].shape:
            raise ConfigError(
                f"pretrained checkpoint '{path}': '{source}' has shape {tuple(tensor.shape)} but the {family} "
                f"preset's '{target}' needs {tuple(own[target].shape)} (a checkpoint of another size?)"
            )
        new[target] = value.to(own[target].dtype)
    report.unexpected = sorted(k for k in state if k not in used and not k.startswith(IGNORED_PREFIXES))
    report.missing += sorted(k for k in own if k not in new and k not in report.missing)
    encoder.load_state_dict(new, strict=False)
    report.loaded = len(new)
    return report


def check_pretrained(path: str | Path, architecture: str, preset: str) -> LoadReport:
    """Dry run of :func:`load_pretrained` into a fresh encoder of ``preset`` (errors before any training)."""
    from upbench.architectures.presets import MIT_PRESETS, VIT_PRESETS, lookup
    from upbench.architectures.timm_backbone import PREFIX

    if preset.startswith(PREFIX):
        raise ConfigError(f"model.pretrained loads MiT and ViT presets only, not '{preset}' (timm loads its own)")
    if architecture == "hierarchical":
        encoder: nn.Module = MiT(lookup(MIT_PRESETS, preset, architecture))  # type: ignore[arg-type]
    else:
        encoder = ViT(lookup(VIT_PRESETS, preset, architecture))  # type: ignore[arg-type]
    return load_pretrained(encoder, path)
