"""Face Shape Reconstructor ``R`` (PECHead, Gao et al. 2023, Sec. 3.1, Eq. 1; supplement Sec. 2.1/2.3).

``l^z, p^z, e^z = R(x^z)``: a timm CNN regresses the coefficients of a parametric face model from one image;
the projected 68 model landmarks are the predefined landmarks ``l``. The paper fits the Basel Face Model with
Deng et al.'s reconstruction network (ResNet-50); BFM cannot be redistributed, so ``R`` here regresses the
coefficients of the project's own 3D landmark model :class:`reenact.face.model3d.FaceModel3D` (identity,
expression, head pose (yaw, pitch, roll), 2D translation and scale of its weak-perspective projection) and is
trained in its own stage with a landmark reprojection loss plus coefficient regularisation
(:func:`reconstructor_loss`), then frozen.

Coordinates: ``FaceModel3D`` projects into ``align_corners=False`` normalised coordinates; everything returned
here is in the ``align_corners=True`` convention of :mod:`reenact.nn.keypoints` (``-1``/``+1`` = centres of
the first/last pixel), the one the motion estimators and warps use.
"""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reenact.face.model3d import FaceModel3D, to_pixels
from reenact.nn.keypoints import pixels_to_normalized

#: Keys of a coefficient dictionary and their sizes (``E``/``I`` come from the face model).
POSE_KEYS = ("pose", "translation", "scale")


def model_to_grid(points: Tensor, size: tuple[int, int]) -> Tensor:
    """``FaceModel3D`` normalised points ``[..., 2]`` (align_corners=False) -> ``reenact.nn`` normalised points
    (align_corners=True) of an ``(h, w)`` image."""
    return pixels_to_normalized(to_pixels(points, size), size)


class FaceShapeReconstructor(nn.Module):
    """``R``: image -> face-model coefficients -> 68 projected landmarks (Eq. 1).

    Args:
        backbone: timm model name (``resnet50`` in the paper preset); always built with ``pretrained=False``
            (ImageNet weights are not fetched at run time; R is trained in its own stage).
        pose_range: degrees the raw yaw/pitch/roll outputs are multiplied by (a unit output = ``pose_range``).
        scale_init: projection scale of a zero output (half a face width in normalised units).

    Forward: ``image [B, 3, H, W]`` in ``[0, 1]`` -> dict ``pose [B, 3]`` (degrees), ``translation [B, 2]``,
    ``scale [B]``, ``expression [B, E]`` (in ``[0, 1]`` like the face model's), ``identity [B, I]``.
    """

    def __init__(self, backbone: str = "resnet50", pose_range: float = 60.0, scale_init: float = 0.5) -> None:
        super().__init__()
        self.face_model = FaceModel3D()
        self.backbone = timm.create_model(backbone, pretrained=False, num_classes=0)
        self.expression_dim = self.face_model.expression_dim
        self.identity_dim = self.face_model.identity_dim
        self.pose_range = pose_range
        self.scale_init = scale_init
        outputs = 3 + 2 + 1 + self.expression_dim + self.identity_dim
        self.head = nn.Linear(self.backbone.num_features, outputs)
        # A zero head predicts the mean face, frontal, centred, at scale_init: a sane start for reprojection.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        with torch.no_grad():
            # Expression sigmoid(-3) ~ 0.05: near neutral without saturating the gradient.
            self.head.bias[6:6 + self.expression_dim].fill_(-3.0)

    @property
    def coefficient_dim(self) -> int:
        """Size of the pose+expression conditioning vector of :func:`condition_vector`."""
        return 6 + self.expression_dim

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        raw = self.head(self.backbone(image))
        e = self.expression_dim
        return {
            "pose": raw[:, 0:3] * self.pose_range,
            "translation": raw[:, 3:5],
            "scale": self.scale_init * torch.exp(raw[:, 5]),
            "expression": torch.sigmoid(raw[:, 6:6 + e]),
            "identity": raw[:, 6 + e:],
        }

    def landmarks(self, coefficients: dict[str, Tensor], size: tuple[int, int],
                  identity: Tensor | None = None) -> Tensor:
        """Projected 68 landmarks ``[..., 68, 2]`` (``reenact.nn`` normalised coordinates of an ``size`` image).

        ``identity`` overrides the coefficients' own: the paper computes ``l^d`` with the *source* identity
        (Sec. 3.1) so the driving landmarks keep the source's face shape.
        """
        ident = coefficients["identity"] if identity is None else identity
        points = self.face_model(ident, coefficients["expression"], coefficients["pose"],
                                 coefficients["translation"], coefficients["scale"])
        return model_to_grid(points, size)


def condition_vector(coefficients: dict[str, Tensor]) -> Tensor:
    """``(p, e)`` of Eq. 2 as one vector ``[..., 6 + E]``: yaw/pitch/roll (scaled to about unit range),
    translation, log-scale, expression. This is what ``E`` is conditioned on through AdaIN."""
    return torch.cat([
        coefficients["pose"] / 45.0,
        coefficients["translation"],
        torch.log(coefficients["scale"].clamp_min(1e-4)).unsqueeze(-1),
        coefficients["expression"],
    ], dim=-1)


def reconstructor_loss(reconstructor: FaceShapeReconstructor, coefficients: dict[str, Tensor], landmarks_px: Tensor,
                       size: tuple[int, int], identity_weight: float = 1e-3, expression_weight: float = 1e-3
                       ) -> dict[str, Tensor]:
    """R-stage objective: landmark reprojection + coefficient regularisation (Deng et al. 2019's landmark and
    regularisation terms; the photometric term needs BFM's texture and is not available).

    Args:
        coefficients: ``R``'s output for ``[N]`` images.
        landmarks_px: ``[N, 68, 2]`` target landmarks in pixels (dataset annotations / dlib detections).
        size: ``(H, W)`` of the images.

    Returns dict ``reprojection`` (mean Euclidean point error in normalised units), ``regularisation`` and
    ``total``.
    """
    predicted = reconstructor.landmarks(coefficients, size)
    target = pixels_to_normalized(landmarks_px.to(predicted.dtype), size)
    reprojection = (predicted - target).pow(2).sum(-1).add(1e-8).sqrt().mean()
    regularisation = (identity_weight * coefficients["identity"].pow(2).mean()
                      + expression_weight * coefficients["expression"].pow(2).mean())
    return {"reprojection": reprojection, "regularisation": regularisation,
            "total": reprojection + regularisation}


def pose_error(predicted: Tensor, target: Tensor) -> Tensor:
    """Mean absolute yaw/pitch/roll error in degrees, ``[N, 3]`` x ``[N, 3]`` -> scalar."""
    return F.l1_loss(predicted, target)


__all__ = ["FaceShapeReconstructor", "condition_vector", "model_to_grid", "pose_error", "reconstructor_loss"]
