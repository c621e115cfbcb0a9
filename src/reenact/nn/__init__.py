"""Shared neural building blocks (pure PyTorch, no Lightning).

Coordinates everywhere are normalised ``(x, y)`` in ``[-1, 1]`` with ``-1``/``+1`` at the centres of the
first/last pixel (``grid_sample(align_corners=True)``); see :mod:`reenact.nn.keypoints`.

Modules:
    blocks         ResBlock2d, DownBlock2d, UpBlock2d, SameBlock2d, AntiAliasInterpolation2d (FOMM);
                   AdaIN, AdaINResBlock2d, SEBlock, ConvGRUCell
    hourglass      FOMM Encoder / Decoder / Hourglass (checkpoint-compatible names)
    keypoints      coordinate grid, Gaussian heatmaps, soft-argmax, KeypointDetector, relative_keypoints
    warping        warp, flow_to_grid / grid_to_flow, occlusion_blend
    dense_motion   FOMM DenseMotionNetwork
    tps            RandomTPS (equivariance transforms)
    encoding       PositionalEncoding (SRT/FSRT sinusoidal)
    discriminators PatchDiscriminator, MultiScaleDiscriminator
    losses         hinge / LSGAN / non-saturating GAN losses, feature matching, R1, equivariance,
                   VGG19Perceptual
"""

from reenact.nn.blocks import (
    AdaIN,
    AdaINResBlock2d,
    AntiAliasInterpolation2d,
    ConvGRUCell,
    DownBlock2d,
    ResBlock2d,
    SameBlock2d,
    SEBlock,
    UpBlock2d,
    make_norm,
)
from reenact.nn.dense_motion import DenseMotionNetwork
from reenact.nn.discriminators import MultiScaleDiscriminator, PatchDiscriminator
from reenact.nn.encoding import PositionalEncoding
from reenact.nn.hourglass import Decoder, Encoder, Hourglass
from reenact.nn.keypoints import (
    KeypointDetector,
    convex_hull_area,
    heatmap_to_keypoints,
    keypoints_to_heatmaps,
    make_coordinate_grid,
    normalized_to_pixels,
    pixels_to_normalized,
    relative_keypoints,
    softmax_heatmaps,
)
from reenact.nn.losses import (
    VGG19Perceptual,
    discriminator_loss,
    equivariance_loss,
    feature_matching_loss,
    generator_loss,
    hinge_d_loss,
    hinge_g_loss,
    lsgan_d_loss,
    lsgan_g_loss,
    nonsaturating_d_loss,
    nonsaturating_g_loss,
    r1_penalty,
)
from reenact.nn.tps import RandomTPS
from reenact.nn.warping import flow_to_grid, grid_to_flow, identity_grid, occlusion_blend, resize_grid, warp

__all__ = [
    "AdaIN",
    "AdaINResBlock2d",
    "AntiAliasInterpolation2d",
    "ConvGRUCell",
    "Decoder",
    "DenseMotionNetwork",
    "DownBlock2d",
    "Encoder",
    "Hourglass",
    "KeypointDetector",
    "MultiScaleDiscriminator",
    "PatchDiscriminator",
    "PositionalEncoding",
    "RandomTPS",
    "ResBlock2d",
    "SEBlock",
    "SameBlock2d",
    "UpBlock2d",
    "VGG19Perceptual",
    "convex_hull_area",
    "discriminator_loss",
    "equivariance_loss",
    "feature_matching_loss",
    "flow_to_grid",
    "generator_loss",
    "grid_to_flow",
    "heatmap_to_keypoints",
    "hinge_d_loss",
    "hinge_g_loss",
    "identity_grid",
    "keypoints_to_heatmaps",
    "lsgan_d_loss",
    "lsgan_g_loss",
    "make_coordinate_grid",
    "make_norm",
    "nonsaturating_d_loss",
    "nonsaturating_g_loss",
    "normalized_to_pixels",
    "occlusion_blend",
    "pixels_to_normalized",
    "r1_penalty",
    "relative_keypoints",
    "resize_grid",
    "softmax_heatmaps",
    "warp",
]
