"""LPMM's head pose in degrees (:mod:`reenact.models.lpmm.posemap`): the fitted map reads and sets angles, an old
checkpoint loads without it, `reenact edit --yaw` and the editing protocol's frontalisation work through it, and
undetected frames stay out of the basis and the regressor's targets."""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import pytest
import torch

from reenact.face.pose import estimate_head_pose
from reenact.models.lpmm import control
from reenact.models.lpmm.pca import LandmarkPCA, align_landmarks
from reenact.models.lpmm.posemap import PoseMap, PoseNotFittedError
from test_lpmm import _lpmm, _tensor_batch, dot_faces


def _linear_data(count: int = 400, size: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    params = torch.randn(count, size, generator=generator)
    mixing = torch.randn(3, size, generator=generator) * 5
    pose = params @ mixing.T + torch.tensor([2.0, -1.0, 0.5]) + 0.01 * torch.randn(count, 3, generator=generator)
    return params, pose, mixing


def test_pose_map_reads_and_sets_angles() -> None:
    params, pose, _ = _linear_data()
    posemap = PoseMap(params.shape[1]).fit(params, pose)
    assert bool(posemap.fitted) and bool((posemap.r2 > 0.999).all())
    torch.testing.assert_close(posemap.pose(params), pose, atol=0.05, rtol=0)
    moved = posemap.move(params[:5], torch.tensor([[20.0, float("nan"), 0.0]]))
    read = posemap.pose(moved)
    torch.testing.assert_close(read[:, 0], torch.full((5,), 20.0), atol=1e-3, rtol=0)
    torch.testing.assert_close(read[:, 2], torch.zeros(5), atol=1e-3, rtol=0)
    torch.testing.assert_close(read[:, 1], posemap.pose(params[:5])[:, 1], atol=1e-3, rtol=0)  # NaN: kept
    turned = posemap.pose(posemap.move(params[:5], torch.tensor([[0.0, 5.0, 0.0]]), relative=True))
    torch.testing.assert_close(turned - posemap.pose(params[:5]), torch.tensor([[0.0, 5.0, 0.0]]).expand(5, 3),
                               atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="does not vary"):
        PoseMap(params.shape[1]).fit(params, torch.zeros_like(pose))
    with pytest.raises(ValueError, match="at least 14"):
        PoseMap(params.shape[1]).fit(params[:10], pose[:10])


def test_pose_map_on_synthetic_faces_means_degrees(synthetic_root: Path) -> None:
    """Fitted on the synthetic training annotations (landmarks + head pose), setting yaw to +-15 degrees moves the
    landmarks so that the project's own 3D pose fit of them reads about that yaw: the map speaks degrees."""
    landmarks, pose = [], []
    for path in sorted(glob.glob(str(synthetic_root / "annotations" / "train" / "*.npz"))):
        with np.load(path) as data:
            landmarks.append(data["landmarks"])
            pose.append(data["pose"])
    points = torch.from_numpy(np.concatenate(landmarks)).float()
    angles = torch.from_numpy(np.concatenate(pose)).float()
    size = 64.0  # the fixture's frames
    pca = LandmarkPCA(20).fit_landmarks(points, size)
    params = pca.project(align_landmarks(points, size), 20)
    posemap = PoseMap(20).fit(params, angles)
    assert float(posemap.r2[0]) > 0.8 and float(posemap.r2[1]) > 0.5, posemap.r2
    frontal = params[angles[:, 0].abs().argmin()][None]
    for target in (-15.0, 15.0):
        moved = posemap.move(frontal, torch.tensor([[target, float("nan"), float("nan")]]))
        shape = pca.reconstruct(moved).unflatten(-1, (68, 2)) * size + size / 2
        measured = estimate_head_pose(shape[0].double().numpy()).reshape(-1)
        assert abs(float(measured[0]) - target) < 6.0, (target, measured)


def test_old_checkpoint_loads_without_pose_map_and_says_so() -> None:
    torch.manual_seed(0)
    model = _lpmm()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("pose_map.")}
    fresh = _lpmm()
    fresh.load_state_dict(state, strict=True)  # no error: the map stays unfitted
    assert not bool(fresh.pose_map.fitted)
    assert fresh.editing_tasks == ("expression_transfer",)
    with pytest.raises(PoseNotFittedError, match="no pose map"):
        fresh.pose_map.pose(torch.zeros(1, 20))


def test_lpmm_edits_head_angles_and_frontalises(fitted_lpmm_with_pose: torch.nn.Module) -> None:
    model = fitted_lpmm_with_pose
    assert "frontalisation" in model.editing_tasks
    source = _tensor_batch(2, seed=5)["source"][:, 0]
    plain = control.edit(model, source)
    turned = control.edit(model, source, yaw=20.0)
    assert (turned - plain).abs().mean() > 1e-4
    params = model.params_from_image(source)
    torch.testing.assert_close(model.pose_map.pose(model.pose_map.move(params, torch.tensor([[20.0, 0.0, 0.0]])))[:, 0],
                               torch.full((2,), 20.0), atol=1e-3, rtol=0)
    frontal = model.edit_image(source, head_pose=torch.zeros(2, 3))
    assert frontal.shape == source.shape
    # An adaptor that never trained is refused instead of returning the unedited picture.
    untrained = _lpmm()
    untrained.load_state_dict(model.state_dict())
    torch.nn.init.zeros_(untrained.adaptor.mlp[-1].weight)
    with pytest.raises(ValueError, match="never trained"):
        control.edit(untrained.eval(), source, {0: 1.0})


@pytest.fixture(scope="module")
def fitted_lpmm_with_pose() -> torch.nn.Module:
    """The fitted LPMM of test_lpmm with a pose map fitted from its dot faces' landmarks against a pose that is a
    linear read-out of them (dot faces have no annotated angles)."""
    torch.manual_seed(0)
    model = _lpmm()
    _, landmarks = dot_faces(200, seed=1)
    points = torch.from_numpy(landmarks)
    model.fit_basis(points)
    batch = _tensor_batch(4, seed=2)
    model.prepare_adaptor(batch["source"][0], torch.cat([batch["source"][:, 0], batch["driving"][:, 0]]))
    with torch.no_grad():
        torch.nn.init.normal_(model.regressor.net.get_classifier().weight, std=0.05)
        torch.nn.init.normal_(model.adaptor.mlp[-1].weight, std=0.05)
    params = model.pca.project(align_landmarks(points.float(), model.image_size), 20)
    pose = params[:, :3] * torch.tensor([30.0, 20.0, 10.0]) + 0.1 * torch.randn(params.shape[0], 3)
    model.fit_pose_map(points, pose)
    return model.eval()


def test_undetected_frames_give_no_regressor_target() -> None:
    torch.manual_seed(0)
    model = _lpmm()
    _, landmarks = dot_faces(200, seed=1)
    model.fit_basis(torch.from_numpy(landmarks))
    images = _tensor_batch(4, seed=3)["source"][:, 0]
    target = torch.from_numpy(dot_faces(4, seed=4)[1]).float()
    wrong = target.clone()
    wrong[2:] += 10.0  # the frames an annotation marks undetected carry copied, wrong landmarks
    detected = torch.tensor([1, 1, 0, 0])
    model.regressor.eval()  # BatchNorm in eval: the 4-frame and 2-frame batches then give comparable outputs
    masked = model.regressor_losses(images, wrong, detected)["total"]
    clean = model.regressor_losses(images[:2], target[:2])["total"]
    torch.testing.assert_close(masked, clean)
    assert float(model.regressor_losses(images, wrong, torch.zeros(4))["total"]) == 0.0
