"""Expression bases for :class:`reenact.face.model3d.FaceModel3D` richer than its 7 built-in blendshapes.

PECHead (paper 000 Sec. 3.1) conditions its generator on the expression coefficients of the Basel Face Model
fitted by Deng et al.'s reconstruction network (64 components). Everything the driving frame passes on goes
through those coefficients, so an expression the basis cannot express cannot be transferred. Two sources here:

* :func:`learn_expression_basis`: a basis learned from data, the PCA of pose- and identity-normalised 68-point
  landmarks of a training set (its annotations). Each frame is fitted with the face model
  (:func:`reenact.face.pose.fit_pose`: pose, scale, translation, identity); its identity is the mean of its
  video's per-frame identities (one person per clip); the residual of the landmarks against that video's neutral
  face, rotated back into the canonical frame, is the frame's expression displacement. The components are the
  uncentred principal directions of those displacements (so coefficient 0 is the neutral face, as in BFM), each
  scaled by its standard deviation: coefficients are in standard deviations of the training set.
* :func:`load_bfm_expression_basis`: Deng et al.'s ``BFM_model_front.mat`` (Deep3DFaceRecon; BFM 2009 shape with
  the 64 expression components of FaceWarehouse), its 68 landmark vertices mapped into the face model's
  canonical frame by the similarity that best aligns BFM's mean landmarks to the model's mean shape. BFM cannot
  be redistributed; the file is found through :mod:`reenact.weights` (``bfm-front``) or a configured path.

Both return ``[K, 68, 3]`` displacements in model units (half a face width), for ``FaceModel3D(expression_basis=)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from reenact.face.model3d import FaceModel3D, rotation_matrix
from reenact.face.similarity import similarity_transform

#: Minimum-norm 3D lift of an image-plane displacement: a 2D residual gives no depth, so it is taken as 0 in the
#: camera frame and rotated back with the frame's head pose.
_LIFT = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)


@dataclass
class LearnedExpressionBasis:
    """Result of :func:`learn_expression_basis`.

    Attributes:
        basis: ``[K, 68, 3]`` float32 displacements, component ``k`` scaled by its standard deviation.
        explained: ``[K]`` fraction of the displacements' total energy each component explains.
        frames: number of frames it was learned from.
    """

    basis: Tensor
    explained: Tensor
    frames: int


def expression_displacements(landmarks_px: Tensor | np.ndarray, video_index: Tensor | np.ndarray) -> Tensor:
    """Pose- and identity-normalised expression displacements of annotated frames.

    Args:
        landmarks_px: ``[N, 68, 2]`` pixel landmarks (any isotropic unit).
        video_index: ``[N]`` integer id of each frame's video: frames of one video share one identity.

    Returns ``[N, 68, 3]`` float64 displacements in canonical model units.
    """
    from reenact.face.pose import fit_pose

    landmarks = torch.as_tensor(np.asarray(landmarks_px, dtype=np.float64))
    videos = torch.as_tensor(np.asarray(video_index)).long()
    if landmarks.ndim != 3 or landmarks.shape[1:] != (68, 2) or videos.shape != landmarks.shape[:1]:
        raise ValueError(f"expected landmarks [N, 68, 2] and video_index [N], got {tuple(landmarks.shape)} and "
                         f"{tuple(videos.shape)}")
    fit = fit_pose(landmarks.numpy(), fit_shape=True)
    identity = torch.from_numpy(fit.identity)
    # One identity per video: the mean of its frames' fits (their expressions differ, the person does not).
    unique, inverse = torch.unique(videos, return_inverse=True)
    sums = torch.zeros(len(unique), identity.shape[1], dtype=torch.float64).index_add_(0, inverse, identity)
    counts = torch.bincount(inverse, minlength=len(unique)).to(torch.float64)[:, None]
    identity = (sums / counts)[inverse]
    model = FaceModel3D().double()
    neutral = model.landmarks_3d(identity, torch.zeros(len(landmarks), model.expression_dim, dtype=torch.float64))
    pose = torch.from_numpy(fit.pose)
    scale = torch.from_numpy(fit.scale)[:, None, None]
    translation = torch.from_numpy(fit.translation)[:, None, :]
    residual = (landmarks - translation) / scale - model.project(neutral, pose, torch.zeros_like(pose[:, :2]),
                                                                 torch.ones_like(pose[:, 0]))
    rotation = rotation_matrix(pose)  # [N, 3, 3]: canonical -> camera
    lifted = torch.einsum("ij,nkj->nki", _LIFT, residual)  # [N, 68, 3] in the camera frame
    return torch.einsum("nji,nkj->nki", rotation, lifted)  # R^T: back into the canonical frame


def learn_expression_basis(landmarks_px: Tensor | np.ndarray, video_index: Tensor | np.ndarray,
                           components: int = 32) -> LearnedExpressionBasis:
    """The PCA expression basis of annotated frames (see the module docstring).

    Args:
        landmarks_px: ``[N, 68, 2]`` pixel landmarks of detected faces.
        video_index: ``[N]`` video id of each frame.
        components: ``K``; at most ``min(N, 204)``.

    Raises:
        ValueError: too few frames for ``components`` components.
    """
    displacements = expression_displacements(landmarks_px, video_index)
    n = displacements.shape[0]
    if components < 1 or components > min(n, 68 * 3):
        raise ValueError(f"cannot learn {components} expression components from {n} frames "
                         f"(at most min(frames, 204))")
    flat = displacements.flatten(1)  # [N, 204]
    _, singular, vh = torch.linalg.svd(flat, full_matrices=False)
    std = singular[:components] / np.sqrt(n)  # RMS coefficient of each direction over the frames
    basis = (vh[:components] * std[:, None]).reshape(components, 68, 3)
    # A deterministic sign: the largest-magnitude entry of each component is positive.
    flat_basis = basis.flatten(1)
    signs = torch.sign(flat_basis.gather(1, flat_basis.abs().argmax(1, keepdim=True)))
    basis = basis * signs[:, :, None]
    energy = singular.pow(2)
    return LearnedExpressionBasis(basis=basis.float(), explained=(energy[:components] / energy.sum()).float(),
                                  frames=n)


def load_bfm_expression_basis(path: str | Path) -> Tensor:
    """Deng et al.'s 64 BFM expression components at the 68 landmarks, in canonical model units ``[64, 68, 3]``.

    ``path``: ``BFM_model_front.mat`` (keys ``meanshape [1, 3V]``, ``exBase [3V, 64]``, ``keypoints [1, 68]``
    with 1-based vertex indices), as Deep3DFaceRecon writes it.

    Raises:
        ValueError: the file lacks those keys or their shapes do not fit.
    """
    from scipy.io import loadmat

    path = Path(path)
    try:
        data = loadmat(str(path))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable BFM .mat file ({error})") from error
    missing = [key for key in ("meanshape", "exBase", "keypoints") if key not in data]
    if missing:
        raise ValueError(f"{path}: missing {missing}; expected Deep3DFaceRecon's BFM_model_front.mat "
                         "(meanshape, exBase, keypoints)")
    mean = np.asarray(data["meanshape"], dtype=np.float64).reshape(-1, 3)
    expression = np.asarray(data["exBase"], dtype=np.float64)
    keypoints = np.asarray(data["keypoints"]).reshape(-1).astype(np.int64) - 1
    if keypoints.shape != (68,) or keypoints.min() < 0 or keypoints.max() >= len(mean) \
            or expression.shape[0] != mean.size:
        raise ValueError(f"{path}: keypoints {keypoints.shape}, meanshape {mean.shape}, exBase {expression.shape} "
                         "do not fit together (68 keypoints into V vertices, exBase [3V, K])")
    components = expression.shape[1]
    expression = expression.reshape(-1, 3, components)[keypoints]  # [68, 3, K]
    # BFM's y axis points up, the face model's down (x to the image right and z to the camera in both).
    flip = np.diag([1.0, -1.0, 1.0])
    bfm_mean = mean[keypoints] @ flip
    model_mean = FaceModel3D().mean_shape.double()
    scale, rotation, _ = similarity_transform(torch.from_numpy(bfm_mean)[None], model_mean[None])
    linear = float(scale[0]) * rotation[0].numpy() @ flip
    basis = np.einsum("ij,njk->kni", linear, expression)  # [K, 68, 3]
    return torch.from_numpy(basis).float()


__all__ = ["LearnedExpressionBasis", "expression_displacements", "learn_expression_basis",
           "load_bfm_expression_basis"]
