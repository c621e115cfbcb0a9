"""LP-regressor (LPMM, Lee et al. 2023, Sec. 3.2): ``F: image -> p in R^k``, a MobileNetV2 (Sandler et al.
2018; timm ``mobilenetv2_100``) trained with the l1 distance between the landmarks reconstructed from ``p``
by Eq. 1 and the detected (annotated) landmarks.

Initialisation: the network is built with ``pretrained=False`` on purpose. The paper does not say whether it
starts from ImageNet weights; here they cannot be downloaded (offline), and the project never falls back to
random weights silently, so it starts from scratch, and this is explicit in the code and the README.

Output parameterisation: the last layer predicts ``z = p / sigma`` (``sigma`` the PCA standard deviations),
so every output has unit scale whatever its component's variance; ``p = z * sigma`` is what leaves the
module. This changes the optimisation's conditioning only; the loss is the paper's. The output layer starts
at zero (prediction ``p = 0``, the mean landmarks).
"""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reenact.models.lpmm.pca import NUM_LANDMARKS, LandmarkPCA, align_landmarks

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class LPRegressor(nn.Module):
    """MobileNetV2 from an image ``[B, 3, H, W]`` in ``[0, 1]`` to LPMM parameters ``p [B, k]``.

    Args:
        num_params: ``k``.
        arch: a timm MobileNetV2 name (paper: ``mobilenetv2_100``).
        param_std: ``[k]`` scales of the outputs (the PCA standard deviations; set later with
            :meth:`set_param_std` once the basis is fitted).
    """

    def __init__(self, num_params: int = 40, arch: str = "mobilenetv2_100") -> None:
        super().__init__()
        # pretrained=False: ImageNet weights are not available offline (see the module docstring).
        self.net = timm.create_model(arch, pretrained=False, num_classes=num_params)
        # A zero output layer starts the regressor at p = 0, i.e. the mean landmarks L_bar (Eq. 1): training
        # begins from the base pose instead of random landmarks, which converges markedly faster from scratch.
        head = self.net.get_classifier()
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        self.num_params = num_params
        self.register_buffer("param_std", torch.ones(num_params))
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def set_param_std(self, std: Tensor) -> None:
        self.param_std.copy_(std.clamp_min(1e-6).to(self.param_std))

    def forward(self, image: Tensor) -> Tensor:
        # ImageNet normalisation keeps the input statistics a pretrained MobileNetV2 would expect.
        x = (image - self.pixel_mean.to(image.dtype)) / self.pixel_std.to(image.dtype)
        return self.net(x) * self.param_std.to(x.dtype)


def landmark_l1_loss(params: Tensor, landmarks: Tensor, pca: LandmarkPCA, image_size: int | float) -> Tensor:
    """Sec. 3.2's objective: ``mean |L_hat(p) - L|`` between the Eq. 1 reconstruction of ``params [B, k]`` and
    the detected landmarks ``[B, 68, 2]`` (pixels), both aligned (frame units, centroid removed)."""
    if landmarks.shape[-2:] != (NUM_LANDMARKS, 2):
        raise ValueError(f"expected [B, 68, 2] landmarks, got {tuple(landmarks.shape)}")
    target = align_landmarks(landmarks.to(params.dtype), image_size)
    return F.l1_loss(pca.reconstruct(params), target)
