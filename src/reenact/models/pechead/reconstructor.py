"""Face Shape Reconstructor ``R`` (PECHead, Gao et al. 2023, Sec. 3.1, Eq. 1; supplement Sec. 2.1/2.3).

``l^z, p^z, e^z = R(x^z)``: a timm CNN regresses the coefficients of a parametric face model from one image;
the projected 68 model landmarks are the predefined landmarks ``l``. The paper fits the Basel Face Model with
Deng et al.'s reconstruction network (ResNet-50); BFM cannot be redistributed, so ``R`` here regresses the
coefficients of the project's own 3D landmark model :class:`reenact.face.model3d.FaceModel3D` (identity,
expression, head pose (yaw, pitch, roll), 2D translation and scale of its weak-perspective projection) and is
trained in its own stage with a landmark reprojection loss plus coefficient regularisation
(:func:`reconstructor_loss`), then frozen.

The expression space (``expression_basis``): the face model's 7 named blendshapes (``"blendshapes"``,
coefficients in ``[0, 1]``); a basis learned from the training set's landmarks (``"learned"``, the PCA of pose-
and identity-normalised landmarks, coefficients in standard deviations,
:func:`reenact.face.expression_basis.learn_expression_basis`); or Deng et al.'s 64 BFM components (``"bfm"``,
from the user's ``BFM_model_front.mat``), the paper's. A learned or BFM basis is a buffer of ``R`` and travels
in its checkpoint.

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
from reenact.face.shape_data import NUM_LANDMARKS
from reenact.nn.keypoints import pixels_to_normalized

#: Keys of a coefficient dictionary and their sizes (``E``/``I`` come from the face model).
POSE_KEYS = ("pose", "translation", "scale")
#: Expression spaces of ``R`` (see the module docstring).
EXPRESSION_BASES = ("blendshapes", "learned", "bfm")
#: Deng et al.'s BFM expression components (FaceWarehouse PCA).
BFM_EXPRESSION_COMPONENTS = 64


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
        expression_basis: ``"blendshapes"``, ``"learned"`` (fitted by :meth:`fit_expression_basis` before
            training, ``expression_components`` of them) or ``"bfm"`` (Deng et al.'s 64 from ``bfm_path``, else
            the ``bfm-front`` entry of :mod:`reenact.weights`; without the file the basis is empty until a
            checkpoint fills it, and training asks for the file by name: :meth:`load_bfm_basis`).

    Forward: ``image [B, 3, H, W]`` in ``[0, 1]`` -> dict ``pose [B, 3]`` (degrees), ``translation [B, 2]``,
    ``scale [B]``, ``expression [B, E]`` (blendshapes: in ``[0, 1]``; a linear basis: signed), ``identity [B, I]``.
    """

    expression_basis_fitted: torch.Tensor

    def __init__(self, backbone: str = "resnet50", pose_range: float = 60.0, scale_init: float = 0.5,
                 expression_basis: str = "blendshapes", expression_components: int = 32,
                 bfm_path: str | None = None) -> None:
        super().__init__()
        if expression_basis not in EXPRESSION_BASES:
            raise ValueError(f"expression_basis must be one of {EXPRESSION_BASES}, got {expression_basis!r}")
        self.expression_kind = expression_basis
        if expression_basis == "blendshapes":
            self.face_model = FaceModel3D()
        else:
            if expression_components < 1:
                raise ValueError(f"expression_components must be >= 1, got {expression_components}")
            size = BFM_EXPRESSION_COMPONENTS if expression_basis == "bfm" else expression_components
            self.face_model = FaceModel3D(expression_basis=torch.zeros(size, NUM_LANDMARKS, 3))
            # Registered only for a linear basis, so checkpoints of blendshape models keep their keys.
            self.register_buffer("expression_basis_fitted", torch.tensor(False))
            self.bfm_path = bfm_path
            if expression_basis == "bfm":
                from reenact.weights import available

                # Without the file the basis stays empty: a checkpoint brings it; training asks for the file.
                if bfm_path or available("bfm-front"):
                    self.load_bfm_basis()
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
        if self.blendshapes:
            with torch.no_grad():
                # Expression sigmoid(-3) ~ 0.05: near neutral without saturating the gradient.
                self.head.bias[6:6 + self.expression_dim].fill_(-3.0)

    @property
    def blendshapes(self) -> bool:
        """True for the 7 named blendshapes (coefficients in ``[0, 1]``), False for a learned or BFM basis."""
        return self.expression_kind == "blendshapes"

    @property
    def expression_range(self) -> tuple[float, float]:
        """The usual span of one expression coefficient (for sliders): ``[0, 1]``, or ±3 standard deviations."""
        return (0.0, 1.0) if self.blendshapes else (-3.0, 3.0)

    @property
    def expression_ready(self) -> bool:
        """False for a learned basis not fitted yet (its landmarks would ignore every expression)."""
        return self.blendshapes or bool(self.expression_basis_fitted)

    @torch.no_grad()
    def load_bfm_basis(self) -> None:
        """Read the ``"bfm"`` basis from ``bfm_path``, else the ``bfm-front`` weights entry.

        Raises:
            reenact.weights.MissingWeightsError: no ``BFM_model_front.mat`` (the message says where to put it).
            ValueError: the file is not Deng et al.'s layout, or has another number of components.
        """
        from reenact.face.expression_basis import load_bfm_expression_basis
        from reenact.weights import resolve

        path = self.bfm_path or resolve("bfm-front")
        basis = load_bfm_expression_basis(path)
        if basis.shape != self.face_model.expression_basis.shape:
            raise ValueError(f"{path}: {basis.shape[0]} expression components, expected "
                             f"{self.face_model.expression_basis.shape[0]}")
        self.face_model.expression_basis.copy_(basis.to(self.face_model.expression_basis))
        self.expression_basis_fitted.fill_(True)

    @torch.no_grad()
    def fit_expression_basis(self, landmarks_px: Tensor, video_index: Tensor) -> Tensor:
        """Learn the ``"learned"`` basis from annotated frames (``[N, 68, 2]`` pixels, ``[N]`` video ids);
        returns the fraction of the displacement energy each component explains ``[K]``."""
        if self.expression_kind != "learned":
            raise ValueError(f"R's expression basis is {self.expression_kind!r}; only 'learned' is fitted")
        from reenact.face.expression_basis import learn_expression_basis

        learned = learn_expression_basis(landmarks_px, video_index, self.expression_dim)
        self.face_model.expression_basis.copy_(learned.basis.to(self.face_model.expression_basis))
        self.expression_basis_fitted.fill_(True)
        return learned.explained

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
            "expression": torch.sigmoid(raw[:, 6:6 + e]) if self.blendshapes else raw[:, 6:6 + e],
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
