"""Head Pose-Aware Keypoint Estimator ``E`` (PECHead Sec. 3.1, Eq. 2; supplement Sec. 2.1).

``k^z = E(x^s, p^z, e^z)``: the *source* frame, conditioned through AdaIN on a head pose and expression, gives
the learned keypoints of the frame with that pose and expression. An hourglass of four down and four up AdaIN
residual blocks (skip connections concatenated, U-Net style), a squeeze-and-excitation block on the last layer
(to model correlations among keypoints), a conv to ``K`` heatmaps, spatial softmax and soft-argmax. No
Jacobians (supplement 2.1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reenact.nn.blocks import AdaINResBlock2d, SEBlock
from reenact.nn.keypoints import heatmap_to_keypoints, softmax_heatmaps


class PoseAwareKeypointEstimator(nn.Module):
    """``E`` of Eq. 2.

    Args:
        num_keypoints: ``K`` (paper: 10).
        cond_dim: size of the ``(p, e)`` vector (:func:`reenact.models.pechead.reconstructor.condition_vector`).
        block_expansion, max_features: channels ``min(max_features, block_expansion * 2**i)`` at depth ``i``.
        num_blocks: down (and up) AdaIN blocks (paper: 4).
        scale_factor: the source is resized by this before ``E`` (FOMM detects keypoints at 1/4 of 256 px).
        temperature: softmax temperature of the heatmaps (FOMM: 0.1).

    Forward: ``image [B, 3, H, W]``, ``cond [B, cond_dim]`` -> ``keypoints [B, K, 2]`` (``[-1, 1]``, x-y).
    ``H * scale_factor`` must be divisible by ``2**num_blocks``.
    """

    def __init__(self, num_keypoints: int = 10, cond_dim: int = 16, block_expansion: int = 32,
                 max_features: int = 1024, num_blocks: int = 4, scale_factor: float = 0.25,
                 temperature: float = 0.1) -> None:
        super().__init__()
        self.scale_factor = scale_factor
        self.temperature = temperature
        self.stem = nn.Conv2d(3, block_expansion, 3, padding=1)
        widths = [min(max_features, block_expansion * 2**i) for i in range(num_blocks + 1)]
        self.down = nn.ModuleList(
            [AdaINResBlock2d(widths[i], widths[i + 1], cond_dim, mode="down") for i in range(num_blocks)]
        )
        ups = []
        for i in reversed(range(num_blocks)):
            c_in = widths[i + 1] * (1 if i == num_blocks - 1 else 2)
            ups.append(AdaINResBlock2d(c_in, widths[i], cond_dim, mode="up"))
        self.up = nn.ModuleList(ups)
        out_channels = 2 * widths[0]
        self.se = SEBlock(out_channels, reduction=4)
        self.heatmap = nn.Conv2d(out_channels, num_keypoints, 7, padding=3)

    def forward(self, image: Tensor, cond: Tensor) -> Tensor:
        if self.scale_factor != 1:
            image = F.interpolate(image, scale_factor=self.scale_factor, mode="bilinear", align_corners=False,
                                  antialias=True)
        x = self.stem(image)
        skips = [x]
        for block in self.down:
            x = block(x, cond)
            skips.append(x)
        skips.pop()  # the bottleneck itself starts the decoder
        for block in self.up:
            x = torch.cat([block(x, cond), skips.pop()], dim=1)
        logits = self.heatmap(self.se(x))
        return heatmap_to_keypoints(softmax_heatmaps(logits, self.temperature))


__all__ = ["PoseAwareKeypointEstimator"]
