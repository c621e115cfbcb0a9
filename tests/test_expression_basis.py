"""Expression bases richer than the face model's 7 blendshapes (PECHead paper 000 Sec. 3.1): the PCA basis learned
from pose- and identity-normalised landmarks, Deng et al.'s BFM basis read from the user's file, and PECHead's R
using them (fitted at the start of the R stage, stored in the checkpoint, refused unfitted)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from reenact.face.expression_basis import learn_expression_basis, load_bfm_expression_basis
from reenact.face.model3d import FaceModel3D, rotation_matrix, to_pixels
from reenact.models.pechead.lightning_model import PECHead
from reenact.weights import MissingWeightsError

#: Small PECHead generator sizes (every module present) for 32 px frames.
SMALL_GENERATOR = dict(block_expansion=8, max_features=32, num_bottleneck_blocks=2, kp_block_expansion=8,
                       kp_max_features=32, kp_num_blocks=4, kp_scale_factor=0.5, motion_block_expansion=8,
                       motion_max_features=32, motion_num_blocks=3, dcn_hidden=8, dcn_groups=4,
                       cap_adaptation_blocks=1, cap_refinement_blocks=1)


def _faces(videos: int, frames: int, seed: int) -> dict[str, torch.Tensor]:
    """Landmarks of the face model in pixels of 256 px frames: one random identity per video, yaw/pitch/roll in
    ±25/±15/±10 degrees, random blendshape expressions (blinks included), and the camera of each frame."""
    model = FaceModel3D().double()
    g = torch.Generator().manual_seed(seed)
    n = videos * frames
    identity = (torch.randn(videos, model.identity_dim, generator=g, dtype=torch.float64).clamp(-2, 2)
                .repeat_interleave(frames, 0))
    expression = torch.rand(n, model.expression_dim, generator=g, dtype=torch.float64)
    expression = expression * (torch.rand(n, model.expression_dim, generator=g, dtype=torch.float64) < 0.5)
    pose = (torch.rand(n, 3, generator=g, dtype=torch.float64) * 2 - 1) * torch.tensor([25.0, 15.0, 10.0],
                                                                                       dtype=torch.float64)
    translation = (torch.rand(n, 2, generator=g, dtype=torch.float64) - 0.5) * 0.2
    scale = 0.45 + 0.1 * torch.rand(n, generator=g, dtype=torch.float64)
    points = model(identity, expression, pose, translation, scale)
    return {"landmarks": to_pixels(points, 256), "video": torch.arange(videos).repeat_interleave(frames),
            "identity": identity, "expression": expression, "pose": pose, "translation": translation, "scale": scale}


def test_learned_basis_explains_held_out_expressions() -> None:
    """Fitted on one set of faces, 10 learned components reproduce the expressions of *other* identities: with
    their true camera and identity, the best coefficients leave under a quarter of the expression displacement
    (the neutral face leaves all of it)."""
    train = _faces(videos=12, frames=20, seed=0)
    learned = learn_expression_basis(train["landmarks"], train["video"], components=10)
    assert learned.basis.shape == (10, 68, 3) and learned.frames == 240
    assert torch.all(learned.explained[:-1] >= learned.explained[1:])  # sorted by energy
    test = _faces(videos=4, frames=10, seed=1)
    model = FaceModel3D().double()
    neutral = model.landmarks_3d(test["identity"], torch.zeros(40, model.expression_dim, dtype=torch.float64))
    expressive = model.landmarks_3d(test["identity"], test["expression"])
    rotation = rotation_matrix(test["pose"])[..., :2, :]  # [N, 2, 3]: image-plane rows of R
    scale = test["scale"][:, None, None]
    target = scale * torch.einsum("nij,nkj->nki", rotation, expressive - neutral)  # [N, 68, 2]
    # Image-plane effect of each component on each frame: [N, K, 68, 2]; least squares for its coefficients.
    effects = scale[:, None] * torch.einsum("nij,ckj->ncki", rotation, learned.basis.double())
    design = effects.flatten(2).transpose(1, 2)  # [N, 136, K]
    coefficients = torch.linalg.lstsq(design, target.flatten(1)[..., None]).solution
    residual = target.flatten(1) - (design @ coefficients)[..., 0]
    ratio = residual.norm() / target.norm()
    print(f"held-out residual ratio {float(ratio):.3f}")
    assert ratio < 0.25, float(ratio)


def test_learn_expression_basis_refuses_too_many_components() -> None:
    faces = _faces(videos=2, frames=3, seed=0)
    with pytest.raises(ValueError, match="cannot learn 7 expression components from 6 frames"):
        learn_expression_basis(faces["landmarks"], faces["video"], components=7)


def _write_bfm(path: Path, displacements: torch.Tensor) -> None:
    """A BFM_model_front.mat in Deng et al.'s layout whose 68 keypoint vertices are the face model's mean shape
    and ``displacements [K, 68, 3]`` under a known similarity: y up, 97 units per model unit, rotated 10 degrees
    about the vertical axis, offset; 132 vertices, keypoints shuffled among them (1-based)."""
    from scipy.io import savemat

    g = np.random.default_rng(0)
    vertices = 132
    keypoints = g.permutation(vertices)[:68]
    flip = np.diag([1.0, -1.0, 1.0])
    turn = rotation_matrix(torch.tensor([10.0, 0.0, 0.0], dtype=torch.float64)).numpy()
    linear = 97.0 * flip @ turn
    mean = g.normal(size=(vertices, 3))
    mean[keypoints] = FaceModel3D().mean_shape.double().numpy() @ linear.T + np.array([3.0, -40.0, 12.0])
    k = displacements.shape[0]
    ex_base = g.normal(size=(vertices, 3, k)) * 0.01
    ex_base[keypoints] = np.einsum("ij,knj->nik", linear, displacements.double().numpy())
    savemat(str(path), {"meanshape": mean.reshape(1, -1), "exBase": ex_base.reshape(-1, k),
                        "keypoints": (keypoints + 1).reshape(1, -1).astype(np.float64)})


def test_bfm_basis_is_mapped_into_the_face_model_frame(tmp_path: Path) -> None:
    blendshapes = FaceModel3D().expression_basis
    path = tmp_path / "BFM_model_front.mat"
    _write_bfm(path, blendshapes)
    loaded = load_bfm_expression_basis(path)
    assert loaded.shape == blendshapes.shape
    torch.testing.assert_close(loaded, blendshapes, atol=1e-5, rtol=1e-4)


def test_bfm_file_errors_name_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scipy.io import savemat

    broken = tmp_path / "broken.mat"
    savemat(str(broken), {"meanshape": np.zeros((1, 9))})
    with pytest.raises(ValueError, match=r"broken\.mat: missing \['exBase', 'keypoints'\]"):
        load_bfm_expression_basis(broken)
    monkeypatch.setenv("REENACT_WEIGHTS_DIR", str(tmp_path / "nothing"))
    monkeypatch.delenv("REENACT_WEIGHTS_BFM_FRONT", raising=False)
    # Without the file a model still builds (a checkpoint would bring the basis); training asks for the file.
    module = PECHead(image_size=32, expression_basis="bfm", generator=SMALL_GENERATOR)
    assert not module.reconstructor.expression_ready
    with pytest.raises(MissingWeightsError, match="BFM_model_front.mat"):
        module.on_fit_start()


def test_pechead_bfm_basis_from_a_configured_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The BFM basis loads from ``bfm_path``; its checkpoint carries it to a machine without the file."""
    monkeypatch.setenv("REENACT_WEIGHTS_DIR", str(tmp_path / "nothing"))
    monkeypatch.delenv("REENACT_WEIGHTS_BFM_FRONT", raising=False)
    path = tmp_path / "BFM_model_front.mat"
    _write_bfm(path, torch.randn(64, 68, 3) * 0.02)
    module = PECHead(image_size=32, expression_basis="bfm", bfm_path=str(path),
                     generator=SMALL_GENERATOR).eval()
    with torch.no_grad():
        coefficients = module.coefficients(torch.rand(1, 1, 3, 32, 32))
    assert coefficients["expression"].shape == (1, 1, 64)
    assert module.reconstructor.expression_ready and module.reconstructor.expression_range == (-3.0, 3.0)
    elsewhere = PECHead(image_size=32, expression_basis="bfm", generator=SMALL_GENERATOR)
    assert not elsewhere.reconstructor.expression_ready
    elsewhere.load_state_dict(module.state_dict())
    assert elsewhere.reconstructor.expression_ready
    torch.testing.assert_close(elsewhere.reconstructor.face_model.expression_basis,
                               module.reconstructor.face_model.expression_basis)


def test_pechead_learns_its_expression_basis_in_the_r_stage_and_keeps_it(synthetic_root: Path,
                                                                         tmp_path: Path) -> None:
    """The R stage fits 30 components from the training annotations before its first step; the basis is in the
    checkpoint, the generator stage loads it from there, and a generator stage with an unfitted basis is refused."""
    from reenact.data import ReenactDataModule

    sizes = dict(image_size=32, expression_basis="learned", expression_components=30,
                 generator=SMALL_GENERATOR, disc_block_expansion=8, disc_max_features=32, disc_num_blocks=3,
                 frame_flow="dis")
    r_stage = PECHead(stage="reconstructor", **sizes)
    assert not r_stage.reconstructor.expression_ready
    data = ReenactDataModule(root=str(synthetic_root), image_size=32, batch_size=2, sampling="sequence",
                             num_source=1, num_driving=1, augment=False)
    trainer = L.Trainer(max_steps=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
                        default_root_dir=tmp_path)
    trainer.fit(r_stage, datamodule=data)
    basis = r_stage.reconstructor.face_model.expression_basis
    assert r_stage.reconstructor.expression_ready and basis.shape == (30, 68, 3) and basis.abs().sum() > 0
    checkpoint = tmp_path / "r.ckpt"
    trainer.save_checkpoint(checkpoint)

    generator = PECHead(reconstructor_ckpt=str(checkpoint), **sizes)
    torch.testing.assert_close(generator.reconstructor.face_model.expression_basis, basis)
    generator.eval()
    with torch.no_grad():
        expression = generator.coefficients(torch.rand(2, 1, 3, 32, 32))["expression"]
    assert expression.shape == (2, 1, 30)
    # The landmarks move with every learned component (a zero basis would ignore them).
    coefficients = generator.coefficients(torch.rand(1, 1, 3, 32, 32))
    moved = {**coefficients, "expression": coefficients["expression"] + 1.0}
    assert not torch.allclose(generator.reconstructor.landmarks(coefficients, (32, 32)),
                              generator.reconstructor.landmarks(moved, (32, 32)))

    unfitted = PECHead(**sizes)
    trainer = L.Trainer(max_steps=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
                        default_root_dir=tmp_path)
    with pytest.raises(ValueError, match="learned expression basis is not fitted"):
        trainer.fit(unfitted, datamodule=ReenactDataModule(root=str(synthetic_root), image_size=32, batch_size=2))
