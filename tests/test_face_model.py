"""The 3D landmark face model: shapes, camera conventions, expressions, differentiability."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reenact.face.model3d import (
    EXPRESSION_NAMES,
    MIRROR_68,
    FaceModel3D,
    rotation_matrix,
    to_normalized,
    to_pixels,
)


@pytest.fixture(scope="module")
def model() -> FaceModel3D:
    return FaceModel3D()


def _expression(model: FaceModel3D, **values: float) -> torch.Tensor:
    return model.expression_vector(**values)


def _project(model: FaceModel3D, pose: tuple[float, float, float], **expression: float) -> torch.Tensor:
    points = model.landmarks_3d(torch.zeros(model.identity_dim), _expression(model, **expression))
    return model.project(points, torch.tensor(pose), torch.zeros(2), torch.tensor(1.0))


def test_buffers_only_and_documented_dimensions(model: FaceModel3D) -> None:
    assert list(model.parameters()) == []
    assert model.mean_shape.shape == (68, 3)
    assert 10 <= model.identity_dim <= 16 and len(model.identity_names) == model.identity_dim
    assert model.expression_names == EXPRESSION_NAMES and model.expression_dim == len(EXPRESSION_NAMES)
    for name in ("jaw_open", "smile", "blink_left", "blink_right", "brow_raise", "lip_pucker"):
        assert name in model.expression_names
    with pytest.raises(KeyError):
        model.expression_vector(frown=1.0)


def test_mean_shape_is_a_plausible_ibug_face(model: FaceModel3D) -> None:
    mean = model.mean_shape.double()
    # Symmetric about the midline, centred at the origin, 2 units between jaw points 0 and 16.
    mirrored = mean[list(MIRROR_68)] * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    assert torch.allclose(mirrored, mean, atol=1e-6)
    assert torch.allclose(mean.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-6)
    assert mean[16, 0] - mean[0, 0] == pytest.approx(2.0)
    # Top to bottom (y down): brows, eyes, nose tip, mouth, chin.
    y = mean[:, 1]
    assert y[17:27].mean() < y[36:48].mean() < y[30] < y[48:68].mean() < y[8]
    # The subject's right eye and brow are on the image left.
    assert mean[36:42, 0].mean() < 0 < mean[42:48, 0].mean()
    assert mean[17:22, 0].mean() < 0 < mean[22:27, 0].mean()
    # Depth: the nose tip is the most forward point, the jaw contour recedes toward the ears.
    assert int(torch.argmax(mean[:, 2])) == 30
    jaw_z = mean[0:9, 2]
    assert bool(torch.all(jaw_z[1:] > jaw_z[:-1]))
    # Eye corners and mouth corners sit behind the nose tip by a few centimetres (1 unit ~ 70 mm).
    assert 0.3 < float(mean[30, 2] - mean[36, 2]) < 0.8
    assert 0.2 < float(mean[30, 2] - mean[48, 2]) < 0.7


def test_batched_shapes_broadcast(model: FaceModel3D) -> None:
    identity = torch.randn(2, 1, model.identity_dim)
    expression = torch.rand(1, 3, model.expression_dim)
    points = model.landmarks_3d(identity, expression)
    assert points.shape == (2, 3, 68, 3)
    pose = torch.randn(2, 3, 3) * 10
    translation = torch.randn(2, 3, 2) * 0.1
    scale = torch.rand(2, 3) + 0.2
    projected = model.project(points, pose, translation, scale)
    assert projected.shape == (2, 3, 68, 2)
    assert model.to_camera(points, pose, translation, scale).shape == (2, 3, 68, 3)
    assert model(identity, expression, pose, translation, scale).shape == (2, 3, 68, 2)
    # Each batch element is the same as projecting it alone.
    single = model.project(points[1, 2], pose[1, 2], translation[1, 2], scale[1, 2])
    assert torch.allclose(projected[1, 2], single, atol=1e-6)


def test_neutral_frontal_projection_is_the_scaled_mean_shape(model: FaceModel3D) -> None:
    points = model.landmarks_3d(torch.zeros(model.identity_dim), torch.zeros(model.expression_dim))
    assert torch.allclose(points, model.mean_shape)
    projected = model.project(points, torch.zeros(3), torch.tensor([0.1, -0.2]), torch.tensor(0.4))
    assert torch.allclose(projected, 0.4 * model.mean_shape[:, :2] + torch.tensor([0.1, -0.2]), atol=1e-6)


def test_rotation_matrices_are_rotations_in_the_documented_order() -> None:
    poses = torch.randn(50, 3, dtype=torch.float64) * 40
    rotations = rotation_matrix(poses)
    identity = torch.eye(3, dtype=torch.float64).expand(50, 3, 3)
    assert torch.allclose(rotations @ rotations.transpose(-1, -2), identity, atol=1e-12)
    assert torch.allclose(torch.linalg.det(rotations), torch.ones(50, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(rotation_matrix(torch.zeros(3)), torch.eye(3))

    yaw, pitch, roll = (math.radians(float(a)) for a in poses[0])
    rx = torch.tensor([[1, 0, 0], [0, math.cos(pitch), -math.sin(pitch)], [0, math.sin(pitch), math.cos(pitch)]])
    ry = torch.tensor([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
    rz = torch.tensor([[math.cos(roll), -math.sin(roll), 0], [math.sin(roll), math.cos(roll), 0], [0, 0, 1]])
    assert torch.allclose(rotations[0], (rz @ ry @ rx).double(), atol=1e-12)


def test_pose_signs_follow_the_documentation(model: FaceModel3D) -> None:
    frontal = _project(model, (0.0, 0.0, 0.0))
    centre = frontal.mean(0)
    nose = 30
    turned = _project(model, (25.0, 0.0, 0.0))
    assert turned[nose, 0] - turned.mean(0)[0] > frontal[nose, 0] - centre[0] + 0.1  # +yaw: nose to the right
    up = _project(model, (0.0, 20.0, 0.0))
    assert up[nose, 1] - up.mean(0)[1] < frontal[nose, 1] - centre[1] - 0.05  # +pitch: nose moves up
    rolled = _project(model, (0.0, 0.0, 15.0))
    left_eye, right_eye = rolled[42:48].mean(0), rolled[36:42].mean(0)
    assert left_eye[1] > right_eye[1] + 0.1  # +roll: clockwise, the subject's left eye goes down


def test_jaw_open_opens_the_mouth_and_lowers_the_chin(model: FaceModel3D) -> None:
    closed = _project(model, (0.0, 0.0, 0.0))
    opened = _project(model, (0.0, 0.0, 0.0), jaw_open=1.0)
    gap = lambda points: float(points[66, 1] - points[62, 1])  # noqa: E731
    assert gap(closed) < 0.05 and gap(opened) > 0.25
    assert opened[8, 1] > closed[8, 1] + 0.25
    assert torch.allclose(opened[17:48], closed[17:48])  # eyes and brows stay put


def test_blinks_close_their_own_eye_for_any_identity(model: FaceModel3D) -> None:
    identity = torch.randn(5, model.identity_dim).clamp(-2.5, 2.5)
    right = model.landmarks_3d(identity, _expression(model, blink_right=1.0).expand(5, -1))
    neutral = model.landmarks_3d(identity, torch.zeros(5, model.expression_dim))
    for upper, lower in ((37, 41), (38, 40)):
        assert torch.allclose(right[:, upper], right[:, lower], atol=1e-6)
        assert bool(torch.all(neutral[:, lower, 1] - neutral[:, upper, 1] > 0.1))
    assert torch.allclose(right[:, 42:48], neutral[:, 42:48])  # the left eye stays open
    left = model.landmarks_3d(identity, _expression(model, blink_left=1.0).expand(5, -1))
    assert torch.allclose(left[:, 43], left[:, 47], atol=1e-6) and torch.allclose(left[:, 36:42], neutral[:, 36:42])


def test_other_expressions_move_the_documented_parts(model: FaceModel3D) -> None:
    neutral = _project(model, (0.0, 0.0, 0.0))
    smile = _project(model, (0.0, 0.0, 0.0), smile=1.0)
    width = lambda points: float(points[54, 0] - points[48, 0])  # noqa: E731
    assert width(smile) > width(neutral) + 0.1 and smile[48, 1] < neutral[48, 1]
    raised = _project(model, (0.0, 0.0, 0.0), brow_raise=1.0)
    assert bool(torch.all(raised[17:27, 1] < neutral[17:27, 1] - 0.05))
    lowered = _project(model, (0.0, 0.0, 0.0), brow_lower=1.0)
    assert bool(torch.all(lowered[17:27, 1] > neutral[17:27, 1]))
    assert float(lowered[22, 0] - lowered[21, 0]) < float(neutral[22, 0] - neutral[21, 0])
    mean_pucker = model.landmarks_3d(torch.zeros(model.identity_dim), _expression(model, lip_pucker=1.0))
    assert width(mean_pucker) < 0.8 * width(neutral)
    assert float(mean_pucker[51, 2]) > float(model.mean_shape[51, 2]) + 0.05  # lips push forward


def test_gradients_reach_every_input(model: FaceModel3D) -> None:
    identity = torch.zeros(2, model.identity_dim, requires_grad=True)
    expression = torch.full((2, model.expression_dim), 0.3, requires_grad=True)
    pose = torch.tensor([[10.0, -5.0, 3.0], [0.0, 0.0, 0.0]], requires_grad=True)
    translation = torch.zeros(2, 2, requires_grad=True)
    scale = torch.ones(2, requires_grad=True)
    projected = model(identity, expression, pose, translation, scale)
    (projected**2).sum().backward()
    for tensor in (identity, expression, pose, translation, scale):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all() and tensor.grad.abs().sum() > 0


def test_float64_inputs_give_float64_results(model: FaceModel3D) -> None:
    generator = torch.Generator().manual_seed(0)
    identity = torch.randn(3, model.identity_dim, generator=generator, dtype=torch.float64)
    expression = torch.rand(3, model.expression_dim, generator=generator, dtype=torch.float64)
    pose = torch.randn(3, 3, generator=generator, dtype=torch.float64) * 20
    translation = torch.zeros(3, 2, dtype=torch.float64)
    scale = torch.full((3,), 0.4, dtype=torch.float64)
    result = model(identity, expression, pose, translation, scale)
    assert result.dtype == torch.float64
    single = model(identity.float(), expression.float(), pose.float(), translation.float(), scale.float())
    assert single.dtype == torch.float32 and torch.allclose(result.float(), single, atol=1e-5)
    assert torch.autograd.gradcheck(
        lambda p: model.project(model.mean_shape.double(), p, translation[0], scale[0]), (pose[0].requires_grad_(),)
    )
    numpy_result = model.landmarks_2d_numpy(identity.numpy(), expression.numpy(), pose.numpy(), translation.numpy(),
                                            scale.numpy())
    assert np.allclose(numpy_result, result.numpy())


def test_pixel_conversion_uses_pixel_centres() -> None:
    corners = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]])
    assert torch.allclose(to_pixels(corners, 256), torch.tensor([[-0.5, -0.5], [255.5, 255.5], [127.5, 127.5]]))
    rectangular = to_pixels(corners, (100, 200))  # (height, width)
    assert torch.allclose(rectangular[1], torch.tensor([199.5, 99.5]))
    points = np.random.default_rng(0).uniform(-1, 1, (4, 68, 2))
    assert np.allclose(to_normalized(to_pixels(points, (64, 48)), (64, 48)), points)
    assert isinstance(to_pixels(points, 32), np.ndarray)
