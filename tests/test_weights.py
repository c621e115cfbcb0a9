"""Tests of the pretrained-weights lookup (``reenact.weights``) and of the perceptual loss built on it."""

from __future__ import annotations

import importlib.util
import pickle
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from reenact import weights
from reenact.nn.losses import VGG19_LAYERS, VGG19Perceptual
from reenact.weights import MissingWeightsError


@pytest.fixture
def isolated(no_pretrained_weights: Path) -> Path:
    return no_pretrained_weights


def test_registry_has_the_project_weights() -> None:
    expected = {
        "vgg19-imagenet",
        "inception-fid",
        "i3d-k400",
        "dlib-68",
        "dlib-face-recognition",
        "face-alignment-2dfan4",
        "raft-large",
        "arcface-r100",
        "lpips-vgg",
        "lpips-alex",
    }
    assert expected <= set(weights.names())
    assert weights.get_spec("vgg19-imagenet").files == ("vgg19-dcbbe1cb.pth",)
    assert weights.get_spec("vgg19-imagenet").env_var == "REENACT_WEIGHTS_VGG19_IMAGENET"
    with pytest.raises(KeyError, match="unknown weights"):
        weights.get_spec("no-such-weights")


def test_resolve_finds_file_in_weights_dir(isolated: Path) -> None:
    target = isolated / "weights" / "vgg19-dcbbe1cb.pth"
    torch.save({"w": torch.ones(2)}, target)
    assert weights.resolve("vgg19-imagenet") == target
    assert weights.available("vgg19-imagenet")


def test_resolve_search_order(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = isolated / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "raft_large_C_T_SKHT_V2-ff5fadd5.pth").write_bytes(b"x")
    assert weights.resolve("raft-large") == hub / "raft_large_C_T_SKHT_V2-ff5fadd5.pth"
    # $REENACT_WEIGHTS_DIR beats the torch hub folder ...
    (isolated / "weights" / "raft_large_C_T_SKHT_V2-ff5fadd5.pth").write_bytes(b"y")
    assert weights.resolve("raft-large").parent == isolated / "weights"
    # ... and the per-weight variable beats both, as a file or as a folder.
    own = isolated / "elsewhere.pth"
    own.write_bytes(b"z")
    monkeypatch.setenv("REENACT_WEIGHTS_RAFT_LARGE", str(own))
    assert weights.resolve("raft-large") == own
    folder = isolated / "folder"
    folder.mkdir()
    (folder / "raft_large_C_T_SKHT_V2-ff5fadd5.pth").write_bytes(b"w")
    monkeypatch.setenv("REENACT_WEIGHTS_RAFT_LARGE", str(folder))
    assert weights.resolve("raft-large") == folder / "raft_large_C_T_SKHT_V2-ff5fadd5.pth"


def test_missing_file_error_names_file_and_locations(isolated: Path) -> None:
    with pytest.raises(MissingWeightsError) as info:
        weights.resolve("vgg19-imagenet")
    err = info.value
    assert isinstance(err, FileNotFoundError)
    message = str(err)
    assert "vgg19-dcbbe1cb.pth" in message
    assert "VGG19" in message  # what it is
    assert "REENACT_WEIGHTS_VGG19_IMAGENET" in message
    assert str(isolated / "weights" / "vgg19-dcbbe1cb.pth") in message
    assert str(isolated / "torch" / "hub" / "checkpoints" / "vgg19-dcbbe1cb.pth") in message
    assert "download.pytorch.org" in message  # where to get it
    assert err.files == ("vgg19-dcbbe1cb.pth",) and len(err.searched) == 3
    again = pickle.loads(pickle.dumps(err))  # survives being sent back from a worker process
    assert isinstance(again, MissingWeightsError) and str(again) == message
    assert not weights.available("vgg19-imagenet")


def test_accepted_alternatives_and_required_companions(isolated: Path) -> None:
    (isolated / "weights" / "w600k_r50.onnx").write_bytes(b"onnx")
    assert weights.resolve("arcface-r100").name == "w600k_r50.onnx"
    (isolated / "weights" / "2DFAN4-cd938726ad.zip").write_bytes(b"zip")
    with pytest.raises(MissingWeightsError, match="s3fd-619a316812.pth"):
        weights.resolve("face-alignment-2dfan4")
    (isolated / "weights" / "s3fd-619a316812.pth").write_bytes(b"pth")
    assert weights.resolve("face-alignment-2dfan4").name == "2DFAN4-cd938726ad.zip"


def test_dlib_68_resolves_from_face_recognition_models(isolated: Path) -> None:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None:
        pytest.skip("face-recognition-models is not installed")
    imported_before = "face_recognition_models" in sys.modules
    path = weights.resolve("dlib-68")
    assert path.name == "shape_predictor_68_face_landmarks.dat" and path.is_file()
    assert path.parent.name == "models"
    assert weights.resolve("dlib-face-recognition").parent == path.parent
    # Located without importing the package (its __init__ needs pkg_resources).
    assert ("face_recognition_models" in sys.modules) == imported_before


def test_doctor_rows(isolated: Path) -> None:
    torch.save({}, isolated / "weights" / "vgg19-dcbbe1cb.pth")
    rows = {row["name"]: row for row in weights.doctor_rows()}
    assert set(rows) == set(weights.names())
    assert rows["vgg19-imagenet"]["status"] == "found"
    assert rows["vgg19-imagenet"]["path"] == str(isolated / "weights" / "vgg19-dcbbe1cb.pth")
    raft = rows["raft-large"]
    assert raft["status"] == "missing" and raft["path"] is None
    assert (
        "raft_large_C_T_SKHT_V2-ff5fadd5.pth" in raft["reason"]
        and "REENACT_WEIGHTS_RAFT_LARGE" in raft["reason"]
    )


def test_register_custom_entry(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = weights.WeightSpec(name="test-only.v1", files=("t.bin",), description="test", source="nowhere")
    monkeypatch.setitem(weights._REGISTRY, spec.name, spec)  # noqa: SLF001 - keep the registry clean
    assert spec.env_var == "REENACT_WEIGHTS_TEST_ONLY_V1"
    with pytest.raises(ValueError):
        weights.register(spec)
    (isolated / "weights" / "t.bin").write_bytes(b"1")
    assert weights.resolve("test-only.v1").name == "t.bin"


class _NotATensor:
    pass


def test_load_state_dict_file_is_safe(tmp_path: Path) -> None:
    state = {"a": torch.arange(3.0), "b": torch.ones(2, 2)}
    torch.save(state, tmp_path / "s.pth")
    loaded = weights.load_state_dict_file(tmp_path / "s.pth")
    assert set(loaded) == {"a", "b"} and torch.equal(loaded["a"], state["a"])
    torch.save({"state_dict": state}, tmp_path / "ckpt.pth")
    assert torch.equal(weights.load_state_dict_file(tmp_path / "ckpt.pth", key="state_dict")["b"], state["b"])
    from safetensors.torch import save_file

    save_file(state, str(tmp_path / "s.safetensors"))
    assert torch.equal(weights.load_state_dict_file(tmp_path / "s.safetensors")["a"], state["a"])
    # Arbitrary pickled objects are refused (weights_only=True), never executed.
    torch.save({"evil": _NotATensor()}, tmp_path / "evil.pth")
    with pytest.raises(pickle.UnpicklingError):
        weights.load_state_dict_file(tmp_path / "evil.pth")


# --------------------------------------------------------------------------------------------- perceptual


def test_vgg19_perceptual_requires_real_weights(isolated: Path) -> None:
    with pytest.raises(MissingWeightsError, match="vgg19-dcbbe1cb.pth"):
        VGG19Perceptual()


def tiny_random_test_backbone() -> nn.Sequential:
    """NOT a pretrained network: a small random conv stack that only exercises the loss arithmetic."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())


def test_vgg19_perceptual_maths_with_explicit_test_backbone(isolated: Path) -> None:
    torch.manual_seed(0)
    backbone = tiny_random_test_backbone()
    loss_fn = VGG19Perceptual(layers=(1, 3), weights=(1.0, 0.5), scales=(1.0, 0.5), backbone=backbone)
    gen = torch.rand(2, 3, 32, 32, requires_grad=True)
    target = torch.rand(2, 3, 32, 32)
    assert float(loss_fn(target, target)) == 0.0
    loss = loss_fn(gen, target)
    # Hand computation of the same loss.
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = torch.zeros(())
    for down in loss_fn.pyramid:
        g, t = (down(gen) - mean) / std, (down(target) - mean) / std
        g1, t1 = backbone[1](backbone[0](g)), backbone[1](backbone[0](t))
        g3, t3 = backbone[3](backbone[2](g1)), backbone[3](backbone[2](t1))
        expected = expected + 1.0 * (g1 - t1).abs().mean() + 0.5 * (g3 - t3).abs().mean()
    assert torch.allclose(loss, expected, atol=1e-6)
    loss.backward()
    assert gen.grad is not None and gen.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in backbone.parameters())  # frozen
    loss_fn.train()
    assert not loss_fn.backbone.training


def test_vgg19_perceptual_backbone_is_not_checkpointed(isolated: Path) -> None:
    holder = nn.Module()
    holder.head = nn.Linear(2, 2)
    holder.perceptual = VGG19Perceptual(
        layers=(3,), weights=(1.0,), scales=(1.0,), backbone=tiny_random_test_backbone()
    )
    state = holder.state_dict()
    assert not any(".backbone." in key for key in state)
    before = [p.clone() for p in holder.perceptual.backbone.parameters()]
    holder.load_state_dict(state, strict=True)  # loads although the backbone keys are absent
    assert all(
        torch.equal(a, b) for a, b in zip(before, holder.perceptual.backbone.parameters(), strict=True)
    )


def test_vgg19_layer_names() -> None:
    assert VGG19_LAYERS["relu1_1"] == 1 and VGG19_LAYERS["relu2_1"] == 6 and VGG19_LAYERS["relu3_1"] == 11
    assert VGG19_LAYERS["relu4_1"] == 20 and VGG19_LAYERS["relu5_1"] == 29 and VGG19_LAYERS["pool5"] == 36
    import torchvision

    features = torchvision.models.vgg19(weights=None).features
    assert (
        isinstance(features[VGG19_LAYERS["relu5_4"]], nn.ReLU) and len(features) == VGG19_LAYERS["pool5"] + 1
    )


@pytest.mark.skipif(
    not weights.available("vgg19-imagenet"), reason="real VGG19 ImageNet weights not installed"
)
def test_vgg19_perceptual_with_real_weights() -> None:
    loss_fn = VGG19Perceptual(scales=(1.0,))
    x = torch.rand(1, 3, 64, 64)
    assert float(loss_fn(x, x)) == 0.0 and float(loss_fn(x, torch.rand(1, 3, 64, 64))) > 0
