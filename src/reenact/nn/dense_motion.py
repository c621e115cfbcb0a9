"""FOMM's dense motion network (Siarohin et al. 2019, ``modules/dense_motion.py``).

From ``K`` source/driving keypoint pairs it builds ``K + 1`` candidate backward motions (the identity for
the background plus one translation per keypoint, or a local affine map with Jacobians), warps the
(downsampled) source with each, and lets an hourglass predict a softmax mask over the candidates and an
occlusion map. The combined deformation maps driving-frame coordinates to source-frame coordinates.

Parameter names match FOMM (``hourglass.*``, ``mask.*``, ``occlusion.*``, ``down.weight``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reenact.nn.blocks import AntiAliasInterpolation2d
from reenact.nn.hourglass import Hourglass
from reenact.nn.keypoints import keypoints_to_heatmaps, make_coordinate_grid


class DenseMotionNetwork(nn.Module):
    """Keypoints -> dense deformation + occlusion (FOMM ``DenseMotionNetwork``).

    Args:
        num_keypoints: ``K``.
        num_channels: channels of the image the motions are estimated from.
        block_expansion, num_blocks, max_features: hourglass size; its input has ``(K + 1) * (C + 1)``
            channels (per candidate: heatmap difference + warped source).
        estimate_occlusion: also predict an occlusion map (sigmoid, 1 = visible in the source).
        scale_factor: the motion is estimated at ``scale_factor`` times the image resolution (FOMM: 0.25 at
            256 px); :func:`reenact.nn.warping.warp` resizes the deformation to whatever it warps.
        kp_variance: variance of the keypoint Gaussians (normalised units; FOMM: 0.01).
        head_kernel_size: kernel of the mask and occlusion convolutions (FOMM: 7, at a 64 x 64 motion map).

    Forward: ``source_image [B, C, H, W]``, ``kp_source [B, K, 2]``, ``kp_driving [B, K, 2]`` (``[-1, 1]``,
    x-y), optional ``jacobian_source``/``jacobian_driving [B, K, 2, 2]`` -> dict with
        ``deformation [B, h, w, 2]`` (sampling grid into the source, ``h = H * scale_factor``),
        ``occlusion [B, 1, h, w]`` (only when ``estimate_occlusion``),
        ``mask [B, K + 1, h, w]`` (softmax over candidates; index 0 = background/identity),
        ``sparse_deformed [B, K + 1, C, h, w]`` (source warped by each candidate motion).
    """

    def __init__(
        self,
        num_keypoints: int,
        num_channels: int = 3,
        block_expansion: int = 64,
        num_blocks: int = 5,
        max_features: int = 1024,
        estimate_occlusion: bool = True,
        scale_factor: float = 0.25,
        kp_variance: float = 0.01,
        head_kernel_size: int = 7,
    ):
        super().__init__()
        if head_kernel_size < 1 or head_kernel_size % 2 == 0:
            raise ValueError(f"head_kernel_size must be odd and >= 1, got {head_kernel_size}")
        self.num_keypoints = num_keypoints
        self.scale_factor = scale_factor
        self.kp_variance = kp_variance
        self.hourglass = Hourglass(
            block_expansion, (num_keypoints + 1) * (num_channels + 1), num_blocks, max_features
        )
        pad = head_kernel_size // 2
        self.mask = nn.Conv2d(self.hourglass.out_filters, num_keypoints + 1, kernel_size=head_kernel_size,
                              padding=pad)
        self.occlusion: nn.Conv2d | None = (
            nn.Conv2d(self.hourglass.out_filters, 1, kernel_size=head_kernel_size, padding=pad)
            if estimate_occlusion else None
        )
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def heatmap_representation(self, size: tuple[int, int], kp_source: Tensor, kp_driving: Tensor) -> Tensor:
        """Driving minus source Gaussians, with a zero map for the background: ``[B, K + 1, 1, h, w]``."""
        heat = keypoints_to_heatmaps(kp_driving, size, self.kp_variance) - keypoints_to_heatmaps(
            kp_source, size, self.kp_variance
        )
        zeros = heat.new_zeros(heat.shape[0], 1, *size)
        return torch.cat([zeros, heat], dim=1).unsqueeze(2)

    def sparse_motions(
        self,
        size: tuple[int, int],
        kp_source: Tensor,
        kp_driving: Tensor,
        jacobian_source: Tensor | None = None,
        jacobian_driving: Tensor | None = None,
    ) -> Tensor:
        """Candidate backward motions ``[B, K + 1, h, w, 2]``: identity, then per keypoint
        ``z -> kp_src + J_src J_drv^-1 (z - kp_drv)`` (``J = I`` without Jacobians)."""
        b, k = kp_source.shape[:2]
        h, w = size
        grid = make_coordinate_grid(h, w, dtype=kp_source.dtype, device=kp_source.device).view(1, 1, h, w, 2)
        rel = grid - kp_driving.view(b, k, 1, 1, 2)
        if jacobian_source is not None and jacobian_driving is not None:
            jac = torch.matmul(jacobian_source, torch.inverse(jacobian_driving))  # [B, K, 2, 2]
            rel = torch.matmul(jac.view(b, k, 1, 1, 2, 2), rel.unsqueeze(-1)).squeeze(-1)
        driving_to_source = rel + kp_source.view(b, k, 1, 1, 2)
        return torch.cat([grid.expand(b, 1, h, w, 2), driving_to_source], dim=1)

    def deformed_sources(self, source: Tensor, motions: Tensor) -> Tensor:
        """``source [B, C, h, w]`` warped by each of ``motions [B, K + 1, h, w, 2]``
        -> ``[B, K + 1, C, h, w]``."""
        b, c, h, w = source.shape
        n = motions.shape[1]
        repeated = source.unsqueeze(1).expand(b, n, c, h, w).reshape(b * n, c, h, w)
        warped = F.grid_sample(repeated, motions.reshape(b * n, h, w, 2), align_corners=True)
        return warped.view(b, n, c, h, w)

    def refine(self, feature: Tensor) -> Tensor:
        """Hook on the hourglass output ``[B, C, h, w]`` before the mask and occlusion heads (identity here;
        PECHead's motion estimator adds an SE block, supplement 2.1)."""
        return feature

    def forward(
        self,
        source_image: Tensor,
        kp_source: Tensor,
        kp_driving: Tensor,
        jacobian_source: Tensor | None = None,
        jacobian_driving: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """-> ``deformation [B, h, w, 2]``, ``mask [B, K+1, h, w]``, ``sparse_deformed [B, K+1, 3, h, w]``,
        ``feature [B, C, h, w]`` (the refined hourglass output) and, when estimated, ``occlusion [B, 1, h, w]``."""
        source = self.down(source_image) if self.scale_factor != 1 else source_image
        b, _, h, w = source.shape
        size = (h, w)
        heat = self.heatmap_representation(size, kp_source, kp_driving)
        motions = self.sparse_motions(size, kp_source, kp_driving, jacobian_source, jacobian_driving)
        deformed = self.deformed_sources(source, motions)
        prediction = self.refine(self.hourglass(torch.cat([heat, deformed], dim=2).view(b, -1, h, w)))
        mask_logits, occlusion_logits = self.heads(prediction)
        mask = F.softmax(mask_logits, dim=1)
        deformation = (motions * mask.unsqueeze(-1)).sum(dim=1)
        out = {"deformation": deformation, "mask": mask, "sparse_deformed": deformed, "feature": prediction}
        if occlusion_logits is not None:
            out["occlusion"] = torch.sigmoid(occlusion_logits)
        return out

    def heads(self, prediction: Tensor) -> tuple[Tensor, Tensor | None]:
        """Mask logits ``[B, K + 1, h, w]`` and occlusion logits ``[B, 1, h, w]`` (or ``None``) of the hourglass
        output, as one convolution: a single-channel conv over the same wide input costs almost as much as the
        ``K + 1``-channel one, so stacking the two weight tensors saves the second pass over the input. The
        parameters stay two modules (FOMM's ``mask.*`` and ``occlusion.*`` names)."""
        if self.occlusion is None:
            return self.mask(prediction), None
        weight = torch.cat([self.mask.weight, self.occlusion.weight])
        bias = torch.cat([self.mask.bias, self.occlusion.bias])
        logits = F.conv2d(prediction, weight, bias, padding=self.mask.padding)
        return logits[:, :-1], logits[:, -1:]
