"""Pretrained encoders from local files: every official layout, written here with random weights.

Key names and shapes are written from the official code, independently of upbench's key maps:
the original SegFormer release (NVlabs/SegFormer ``mix_transformer.py``: ``patch_embed{i}``,
``block{i}``, ``norm{i}``, ``attn.q``/``attn.kv``, ``mlp.dwconv.dwconv``), mmseg's converters
(``tools/model_converters/mit2mmseg.py``, ``vit2mmseg.py``, re-expressed below as renames) and
timm's ``VisionTransformer`` (``blocks.{j}.attn.qkv``, ``mlp.fc1``, ``norm``, ``head``).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import Tensor
from torch.nn import functional as F

from upbench.architectures import build_model
from upbench.architectures.presets import MIT_PRESETS, VIT_PRESETS
from upbench.architectures.pretrained import load_pretrained, read_checkpoint
from upbench.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")
K = 3


# --------------------------------------------------------------------------- official layouts
def segformer_release(preset: str, seed: int = 0) -> dict[str, Tensor]:
    """A random MiT classification checkpoint in the original NVlabs layout."""
    cfg = MIT_PRESETS[preset]
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, Tensor] = {}

    def put(key: str, *shape: int) -> None:
        sd[key] = torch.randn(*shape, generator=g)

    prev = 3
    for i, (dim, depth, sr) in enumerate(zip(cfg.dims, cfg.depths, cfg.sr_ratios, strict=True), start=1):
        k = 7 if i == 1 else 3
        put(f"patch_embed{i}.proj.weight", dim, prev, k, k)
        put(f"patch_embed{i}.proj.bias", dim)
        put(f"patch_embed{i}.norm.weight", dim)
        put(f"patch_embed{i}.norm.bias", dim)
        hidden = dim * cfg.mlp_ratio
        for j in range(depth):
            b = f"block{i}.{j}"
            for norm in ("norm1", "norm2"):
                put(f"{b}.{norm}.weight", dim)
                put(f"{b}.{norm}.bias", dim)
            put(f"{b}.attn.q.weight", dim, dim)
            put(f"{b}.attn.q.bias", dim)
            put(f"{b}.attn.kv.weight", 2 * dim, dim)
            put(f"{b}.attn.kv.bias", 2 * dim)
            put(f"{b}.attn.proj.weight", dim, dim)
            put(f"{b}.attn.proj.bias", dim)
            if sr > 1:
                put(f"{b}.attn.sr.weight", dim, dim, sr, sr)
                put(f"{b}.attn.sr.bias", dim)
                put(f"{b}.attn.norm.weight", dim)
                put(f"{b}.attn.norm.bias", dim)
            put(f"{b}.mlp.fc1.weight", hidden, dim)
            put(f"{b}.mlp.fc1.bias", hidden)
            put(f"{b}.mlp.dwconv.dwconv.weight", hidden, 1, 3, 3)
            put(f"{b}.mlp.dwconv.dwconv.bias", hidden)
            put(f"{b}.mlp.fc2.weight", dim, hidden)
            put(f"{b}.mlp.fc2.bias", dim)
        put(f"norm{i}.weight", dim)
        put(f"norm{i}.bias", dim)
        prev = dim
    put("head.weight", 1000, cfg.dims[-1])
    put("head.bias", 1000)
    return sd


def mit_to_mmseg(release: dict[str, Tensor]) -> dict[str, Tensor]:
    """What mmseg's mit2mmseg converter writes (the mit_b*_20220624 files)."""
    out: dict[str, Tensor] = {}
    for key, v in release.items():
        if key.startswith("head."):
            continue
        m = re.match(r"(patch_embed|block|norm)(\d)\.(.*)", key)
        assert m, key
        kind, i, rest = m.group(1), int(m.group(2)) - 1, m.group(3)
        if kind == "patch_embed":
            out[f"layers.{i}.0.{rest.replace('proj.', 'projection.')}"] = v
        elif kind == "norm":
            out[f"layers.{i}.2.{rest}"] = v
        else:
            j, sub = rest.split(".", 1)
            base = f"layers.{i}.1.{j}"
            if sub.startswith("attn.kv."):
                continue
            if sub.startswith("attn.q."):
                p = sub.rsplit(".", 1)[1]
                out[f"{base}.attn.attn.in_proj_{p}"] = torch.cat(
                    [v, release[f"block{i + 1}.{rest[: -len(p)].replace('.q.', '.kv.')}{p}"]]
                )
            elif sub.startswith("attn.proj."):
                out[f"{base}.attn.attn.out_proj.{sub.rsplit('.', 1)[1]}"] = v
            elif sub.startswith("mlp."):
                layer = {"fc1": "0", "dwconv": "1", "fc2": "4"}[sub.split(".")[1]]
                p = sub.rsplit(".", 1)[1]
                out[f"{base}.ffn.layers.{layer}.{p}"] = v[..., None, None] if layer != "1" and p == "weight" else v
            else:
                out[f"{base}.{sub}"] = v
    return out


def timm_vit(preset: str, grid: int, seed: int = 0) -> dict[str, Tensor]:
    """A random timm ViT/16 classification checkpoint (class token, pos_embed on ``grid``)."""
    cfg = VIT_PRESETS[preset]
    g = torch.Generator().manual_seed(seed)
    d, h = cfg.dim, cfg.dim * cfg.mlp_ratio
    sd = {
        "cls_token": torch.randn(1, 1, d, generator=g),
        "pos_embed": torch.randn(1, 1 + grid * grid, d, generator=g),
        "patch_embed.proj.weight": torch.randn(d, 3, 16, 16, generator=g),
        "patch_embed.proj.bias": torch.randn(d, generator=g),
    }
    for j in range(cfg.depth):
        b = f"blocks.{j}"
        for name, shape in (
            ("norm1", (d,)),
            ("attn.qkv", (3 * d, d)),
            ("attn.proj", (d, d)),
            ("norm2", (d,)),
            ("mlp.fc1", (h, d)),
            ("mlp.fc2", (d, h)),
        ):
            sd[f"{b}.{name}.weight"] = torch.randn(*shape, generator=g)
            sd[f"{b}.{name}.bias"] = torch.randn(shape[0], generator=g)
    sd.update({"norm.weight": torch.randn(d, generator=g), "norm.bias": torch.randn(d, generator=g)})
    sd.update({"head.weight": torch.randn(1000, d, generator=g), "head.bias": torch.randn(1000, generator=g)})
    return sd


def vit_to_mmseg(timm: dict[str, Tensor]) -> dict[str, Tensor]:
    """What mmseg's vit2mmseg converter writes (Segmenter's vit_*_p16_384_20220308 files)."""
    renames = [
        (r"^norm\.", "ln1."),
        (r"^patch_embed\.proj\.", "patch_embed.projection."),
        (r"^blocks\.(\d+)\.norm(\d)\.", r"layers.\1.ln\2."),
        (r"^blocks\.(\d+)\.mlp\.fc1\.", r"layers.\1.ffn.layers.0.0."),
        (r"^blocks\.(\d+)\.mlp\.fc2\.", r"layers.\1.ffn.layers.1."),
        (r"^blocks\.(\d+)\.attn\.qkv\.", r"layers.\1.attn.attn.in_proj_"),
        (r"^blocks\.(\d+)\.attn\.proj\.", r"layers.\1.attn.attn.out_proj."),
    ]
    out = {}
    for key, v in timm.items():
        if key.startswith("head."):
            continue
        for pattern, repl in renames:
            key = re.sub(pattern, repl, key)
        out[key] = v
    return out


# --------------------------------------------------------------------------- MiT
@pytest.mark.parametrize("wrap", [False, True])
def test_mit_release_and_mmseg_layouts_load_every_tensor(tmp_path, wrap: bool) -> None:
    release = segformer_release("tiny")
    mmseg = mit_to_mmseg(release)
    torch.save({"state_dict": release} if wrap else release, tmp_path / "mit_release.pth")
    torch.save(mmseg, tmp_path / "mit_mmseg.pth")
    models = []
    for name in ("mit_release.pth", "mit_mmseg.pth"):
        model = build_model("hierarchical", operator="bilinear", num_classes=K, preset="tiny")
        report = load_pretrained(model, tmp_path / name)
        assert (report.missing, report.unexpected) == ([], []), report.summary()
        assert report.loaded == len(model.encoder.state_dict())
        models.append(model.encoder.state_dict())
    assert report.layout == "mmseg"
    for key in models[0]:
        torch.testing.assert_close(models[0][key], models[1][key], rtol=0, atol=0)
    enc = models[0]
    assert torch.equal(enc["stages.0.blocks.0.attn.q.weight"], release["block1.0.attn.q.weight"])
    assert torch.equal(enc["stages.0.blocks.0.attn.kv.bias"], release["block1.0.attn.kv.bias"])
    assert torch.equal(enc["stages.2.blocks.0.ffn.dwconv.weight"], release["block3.0.mlp.dwconv.dwconv.weight"])
    assert torch.equal(enc["stages.3.blocks.0.ffn.fc2.weight"], release["block4.0.mlp.fc2.weight"])
    assert torch.equal(enc["stages.1.norm.bias"], release["norm2.bias"])
    assert torch.equal(enc["stages.0.embed.proj.weight"], release["patch_embed1.proj.weight"])


def test_mit_b1_mmseg_file_shapes(tmp_path) -> None:
    # the shapes of mit_b1_20220624-02e5a6a1.pth (MiT-B1 in mmseg's layout) fit the b1 preset
    torch.save(mit_to_mmseg(segformer_release("b1")), tmp_path / "mit_b1.pth")
    model = build_model("hierarchical", operator="bilinear", num_classes=150, preset="b1")
    report = load_pretrained(model, tmp_path / "mit_b1.pth")
    assert (report.missing, report.unexpected, report.loaded) == ([], [], len(model.encoder.state_dict()))
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 150, 64, 64)


def test_shape_mismatch_is_one_clear_error(tmp_path) -> None:
    torch.save(mit_to_mmseg(segformer_release("b0")), tmp_path / "mit_b0.pth")
    model = build_model("hierarchical", operator="bilinear", num_classes=K, preset="tiny")
    with pytest.raises(ConfigError, match=r"'layers.0.0.projection.weight' has shape \(32, 3, 7, 7\) but .* needs"):
        load_pretrained(model, tmp_path / "mit_b0.pth")


def test_missing_and_unexpected_keys_are_reported(tmp_path) -> None:
    sd = mit_to_mmseg(segformer_release("tiny"))
    del sd["layers.3.2.weight"]
    sd["layers.9.extra"] = torch.zeros(1)
    torch.save(sd, tmp_path / "partial.pth")
    model = build_model("hierarchical", operator="bilinear", num_classes=K, preset="tiny")
    report = load_pretrained(model, tmp_path / "partial.pth")
    assert report.missing == ["stages.3.norm.weight"]
    assert report.unexpected == ["layers.9.extra"]
    assert "1 missing: stages.3.norm.weight" in report.summary()


def test_bad_files_are_one_clear_error(tmp_path) -> None:
    model = build_model("hierarchical", operator="bilinear", num_classes=K, preset="tiny")
    with pytest.raises(ConfigError, match="does not exist"):
        load_pretrained(model, tmp_path / "nope.pth")
    torch.save(timm_vit("tiny", 8), tmp_path / "vit.pth")
    with pytest.raises(ConfigError, match="is not a MiT checkpoint"):
        load_pretrained(model, tmp_path / "vit.pth")
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_pretrained(model, tmp_path / "x.npz")
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_pretrained(model, tmp_path / "junk.pth")


def test_mmseg_segmentor_checkpoint_uses_its_backbone(tmp_path) -> None:
    sd = {f"backbone.{k}": v for k, v in mit_to_mmseg(segformer_release("tiny")).items()}
    sd["decode_head.conv_seg.weight"] = torch.zeros(150, 256, 1, 1)
    torch.save({"meta": {}, "state_dict": sd}, tmp_path / "segformer.pth")
    model = build_model("hierarchical", operator="bilinear", num_classes=K, preset="tiny")
    report = load_pretrained(model, tmp_path / "segformer.pth")
    assert report.missing == [] and report.unexpected == ["decode_head.conv_seg.weight"]


# --------------------------------------------------------------------------- ViT
@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_vit_timm_and_mmseg_layouts_load_and_resize_pos_embed(tmp_path, fmt: str) -> None:
    # the tiny preset's grid is 8 x 8 (128 px); the checkpoint's 6 x 6 is resized as mmseg does
    timm = timm_vit("tiny", grid=6)
    mmseg = vit_to_mmseg(timm)
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(timm, str(tmp_path / "vit_timm.safetensors"))
        save_file(mmseg, str(tmp_path / "vit_mmseg.safetensors"))
    else:
        torch.save(timm, tmp_path / "vit_timm.pth")
        torch.save(mmseg, tmp_path / "vit_mmseg.pth")
    states = []
    for name in ("vit_timm", "vit_mmseg"):
        model = build_model("plain", operator="bilinear", num_classes=K, preset="tiny")
        report = load_pretrained(model, tmp_path / f"{name}.{fmt}")
        assert (report.missing, report.unexpected) == ([], []), report.summary()
        assert report.resized and report.loaded == len(model.encoder.state_dict())
        states.append(model.encoder.state_dict())
    for key in states[0]:
        torch.testing.assert_close(states[0][key], states[1][key], rtol=0, atol=0)
    enc = states[0]
    assert torch.equal(enc["cls_token"], timm["cls_token"])
    assert torch.equal(enc["cls_pos"], timm["pos_embed"][:, :1])
    # mmseg resize_pos_embed: drop the class token, (1, C, 6, 6) -> bicubic, align_corners=False
    grid = timm["pos_embed"][:, 1:].reshape(1, 6, 6, -1).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(8, 8), mode="bicubic", align_corners=False)
    torch.testing.assert_close(enc["pos_embed"], expected)
    assert torch.equal(enc["blocks.2.qkv.weight"], timm["blocks.2.attn.qkv.weight"])
    assert torch.equal(enc["blocks.3.mlp.2.bias"], timm["blocks.3.mlp.fc2.bias"])
    assert torch.equal(enc["norm.weight"], timm["norm.weight"])
    assert torch.equal(enc["patch_embed.weight"], timm["patch_embed.proj.weight"])


def test_vit_pos_embed_on_the_same_grid_is_copied(tmp_path) -> None:
    timm = timm_vit("tiny", grid=8)
    torch.save(timm, tmp_path / "vit.pth")
    model = build_model("plain", operator="bilinear", num_classes=K, preset="tiny")
    report = load_pretrained(model, tmp_path / "vit.pth")
    assert report.resized == []
    grid = timm["pos_embed"][:, 1:].reshape(1, 8, 8, -1).permute(0, 3, 1, 2)
    assert torch.equal(model.encoder.pos_embed.detach(), grid)


def test_vit_class_token_joins_attention() -> None:
    # as mmseg's VisionTransformer with_cls_token=True: the class token changes the patch outputs
    torch.manual_seed(0)
    model = build_model("plain", operator="bilinear", num_classes=K, preset="tiny").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model.encoder(x)
        model.encoder.cls_token.add_(1.0)
        assert not torch.allclose(model.encoder(x), before)


def test_read_checkpoint_unwraps_model_key(tmp_path) -> None:
    torch.save({"model": {"a": torch.ones(1)}}, tmp_path / "deit.pth")
    assert list(read_checkpoint(tmp_path / "deit.pth")) == ["a"]


def test_runner_loads_model_pretrained_and_records_it(tmp_path) -> None:
    from tiny_suites import TINY_TRAIN_SUITE

    from upbench.driver import run_suite
    from upbench.suite import load_suite

    torch.save(mit_to_mmseg(segformer_release("tiny")), tmp_path / "mit_tiny.pth")
    plain = '[[architectures]]\nname = "plain"\npreset = "tiny"\nscales = [4]\n'
    assert plain in TINY_TRAIN_SUITE
    (tmp_path / "tiny.toml").write_text(TINY_TRAIN_SUITE.replace(plain, ""))  # one pretrained path: MiT only
    overrides = [f"model.pretrained={tmp_path / 'mit_tiny.pth'}", "train.iters=1", "profile.enabled=false"]
    suite = load_suite(
        tmp_path / "tiny.toml", overrides=overrides, only=["architecture=hierarchical", "operator=bilinear"]
    )
    run_suite(suite, out_dir=tmp_path / "run", device="cpu", progress=False)
    (cell,) = suite.cells()
    text = (tmp_path / "run" / "cells" / cell.cell_id / "pretrained.txt").read_text()
    assert "(mmseg layout)" in text and "missing" not in text and "unexpected" not in text


def augreg_npz(preset: str, grid: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A random big_vision/augreg ViT .npz (Flax names and shapes, as timm's _load_weights reads them)."""
    cfg = VIT_PRESETS[preset]
    rng = np.random.default_rng(seed)
    d, heads, h = cfg.dim, cfg.heads, cfg.dim * cfg.mlp_ratio

    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    out = {
        "embedding/kernel": r(16, 16, 3, d),  # HWIO
        "embedding/bias": r(d),
        "cls": r(1, 1, d),
        "Transformer/posembed_input/pos_embedding": r(1, 1 + grid * grid, d),
        "Transformer/encoder_norm/scale": r(d),
        "Transformer/encoder_norm/bias": r(d),
        "head/kernel": r(d, 1000),
        "head/bias": r(1000),
    }
    for j in range(cfg.depth):
        b = f"Transformer/encoderblock_{j}"
        for norm in ("LayerNorm_0", "LayerNorm_2"):
            out[f"{b}/{norm}/scale"], out[f"{b}/{norm}/bias"] = r(d), r(d)
        for name in ("query", "key", "value"):
            att = f"{b}/MultiHeadDotProductAttention_1/{name}"
            out[f"{att}/kernel"], out[f"{att}/bias"] = r(d, heads, d // heads), r(heads, d // heads)
        att = f"{b}/MultiHeadDotProductAttention_1/out"
        out[f"{att}/kernel"], out[f"{att}/bias"] = r(heads, d // heads, d), r(d)
        out[f"{b}/MlpBlock_3/Dense_0/kernel"], out[f"{b}/MlpBlock_3/Dense_0/bias"] = r(d, h), r(h)
        out[f"{b}/MlpBlock_3/Dense_1/kernel"], out[f"{b}/MlpBlock_3/Dense_1/bias"] = r(h, d), r(d)
    return out


def test_augreg_npz_loads_with_flax_semantics(tmp_path) -> None:
    arrays = augreg_npz("tiny", grid=8)
    np.savez(tmp_path / "augreg.npz", **arrays)
    model = build_model("plain", operator="bilinear", num_classes=K, preset="tiny")
    report = load_pretrained(model, tmp_path / "augreg.npz")
    assert (report.missing, report.unexpected, report.layout) == ([], [], "timm"), report.summary()
    enc = model.encoder
    d = enc.dim
    x = torch.randn(5, d)
    blk = "Transformer/encoderblock_1/MultiHeadDotProductAttention_1"
    with torch.no_grad():
        qkv = enc.blocks[1].qkv(x)
        # Flax DenseGeneral: q[n, h, e] = sum_c x[n, c] kernel[c, h, e] + bias[h, e]
        for i, name in enumerate(("query", "key", "value")):
            ref = np.einsum("nc,che->nhe", x.numpy(), arrays[f"{blk}/{name}/kernel"]) + arrays[f"{blk}/{name}/bias"]
            torch.testing.assert_close(qkv[:, i * d : (i + 1) * d], torch.from_numpy(ref).reshape(5, d))
        heads = torch.randn(5, d)
        ref = np.einsum("nhe,hec->nc", heads.numpy().reshape(5, enc.blocks[1].heads, -1), arrays[f"{blk}/out/kernel"])
        torch.testing.assert_close(enc.blocks[1].proj(heads), torch.from_numpy(ref + arrays[f"{blk}/out/bias"]))
        mlp = "Transformer/encoderblock_1/MlpBlock_3/Dense_0"
        ref = x.numpy() @ arrays[f"{mlp}/kernel"] + arrays[f"{mlp}/bias"]
        torch.testing.assert_close(enc.blocks[1].mlp[0](x), torch.from_numpy(ref))
        img = torch.randn(1, 3, 16, 16)
        ref = np.einsum("chw,hwco->o", img[0].numpy(), arrays["embedding/kernel"]) + arrays["embedding/bias"]
        torch.testing.assert_close(enc.patch_embed(img)[0, :, 0, 0], torch.from_numpy(ref), rtol=1e-4, atol=1e-4)
    assert torch.equal(enc.cls_token.detach(), torch.from_numpy(arrays["cls"]))
