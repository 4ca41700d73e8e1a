"""The operator registry: lookup, errors, options, plugins."""

from __future__ import annotations

import importlib.metadata as md

import pytest
import torch

import upbench
from upbench import registry
from upbench.errors import InputShapeError, InvalidOptionError, UnknownOperatorError
from upbench.testing import check_operator

BASELINES = {"nearest", "bilinear", "deconv", "pixelshuffle"}


def test_builtins_registered() -> None:
    names = upbench.list_operators()
    assert set(names) >= BASELINES
    assert names == sorted(names)
    assert upbench.list_operators("pixel*") == ["pixelshuffle"]
    assert set(upbench.list_operators(guided=False)) >= BASELINES


def test_unknown_operator_lists_known_and_suggests() -> None:
    with pytest.raises(UnknownOperatorError) as err:
        upbench.create_operator("bilinar", 8, 2)
    text = str(err.value)
    assert "Did you mean 'bilinear'" in text
    for name in upbench.list_operators():
        assert name in text


def test_unknown_option_rejected_before_construction() -> None:
    with pytest.raises(InvalidOptionError, match=r"'alig_corners'.*accepted: align_corners=False"):
        upbench.create_operator("bilinear", 8, 2, alig_corners=True)


def test_option_type_checked() -> None:
    with pytest.raises(InvalidOptionError, match="option 'align_corners' = 'yes' is not valid; it must be true or"):
        upbench.create_operator("bilinear", 8, 2, align_corners="yes")


def test_bad_in_channels() -> None:
    with pytest.raises(InputShapeError, match="in_channels must be a positive integer"):
        upbench.create_operator("deconv", 0, 2)


def _fake_op_module(name: str, *, wrong_shape: bool = False) -> None:
    @upbench.register_operator(name, title="Fake", guided=True, code="test", conventions={"x": "y"})
    class Fake(upbench.Upsampler):
        def __init__(self, in_channels: int, scale: int, *, guide_channels: int | None = None) -> None:
            super().__init__(in_channels, scale, guide_channels=guide_channels)
            self.w = torch.nn.Parameter(torch.ones(1))

        def upsample(self, x, guide):
            s = self.scale - 1 if wrong_shape else self.scale
            y = torch.nn.functional.interpolate(x, scale_factor=s, mode="nearest")
            return y * self.w + guide.mean() * 0.1 if not wrong_shape else y


def test_register_duplicate_name_fails() -> None:
    with pytest.raises(ValueError, match="already registered by upbench_operators.bilinear"):

        @upbench.register_operator("bilinear", title="x", guided=False)
        class Dup(upbench.Upsampler):
            pass


def test_registered_operator_passes_conformance_and_broken_one_fails() -> None:
    upbench.list_operators()
    _fake_op_module("fake_ok")
    _fake_op_module("fake_broken", wrong_shape=True)
    try:
        check_operator("fake_ok", 2)
        with pytest.raises(AssertionError, match="output"):
            check_operator("fake_broken", 4)
    finally:
        registry.unregister_operator("fake_ok")
        registry.unregister_operator("fake_broken")
    assert "fake_ok" not in upbench.list_operators()


def test_plugin_failure_warns_and_others_load(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    (tmp_path / "upbench_test_good_plugin.py").write_text(
        "import torch, upbench\n"
        "@upbench.register_operator('plugin_ok', title='P', guided=False, code='t', conventions={'a': 'b'})\n"
        "class P(upbench.Upsampler):\n"
        "    def upsample(self, x, guide):\n"
        "        return torch.nn.functional.interpolate(x, scale_factor=self.scale)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [
        md.EntryPoint("broken", "upbench_test_missing_module_xyz", registry.ENTRY_POINT_GROUP),
        md.EntryPoint("good", "upbench_test_good_plugin", registry.ENTRY_POINT_GROUP),
    ]
    monkeypatch.setattr(md, "entry_points", lambda group: [e for e in eps if e.group == group])
    upbench.list_operators()  # built-ins load first
    with pytest.warns(RuntimeWarning, match="plugin 'broken'.*failed to load and is skipped"):
        loaded = registry.load_plugins()
    try:
        assert loaded == ["good"]
        assert "plugin_ok" in upbench.list_operators()
        assert set(upbench.list_operators()) >= BASELINES
    finally:
        registry.unregister_operator("plugin_ok")


def test_plugin_module_registers_with_origin(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    (tmp_path / "upbench_test_plugin_mod.py").write_text(
        "import torch, upbench\n"
        "@upbench.register_operator('plugin_mod', title='P', guided=False, code='t', conventions={'a': 'b'})\n"
        "class P(upbench.Upsampler):\n"
        "    def upsample(self, x, guide):\n"
        "        return torch.nn.functional.interpolate(x, scale_factor=self.scale)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = md.EntryPoint("mine", "upbench_test_plugin_mod", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(md, "entry_points", lambda group: [ep])
    upbench.list_operators()
    try:
        assert registry.load_plugins() == ["mine"]
        assert upbench.operator_info("plugin_mod").origin == "plugin:mine"
        check_operator("plugin_mod", 2)
    finally:
        registry.unregister_operator("plugin_mod")


def test_default_guide_width_is_the_image_for_task_agnostic_operators_else_the_feature() -> None:
    import upbench
    from upbench.registry import list_operators, operator_info

    for name in list_operators():
        info = operator_info(name)
        op = upbench.create_operator(name, 16, 4)
        if not info.guided:
            assert op.guide_channels is None, name
        elif info.family == "task-agnostic":
            assert op.guide_channels == 3, name  # the RGB image, as in their papers
        else:
            assert op.guide_channels == 16, name  # the official ReSFU/SAPA/FADE default: in_channels
