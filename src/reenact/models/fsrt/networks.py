"""FSRT's networks (Rochow, Schwarz and Behnke, CVPR 2024): the expression encoder (Eq. 8-10), the patch CNN and
transformer encoder ``E`` (Sec. 3.1, Eq. 1), and the decoder (Eq. 2, 7). :class:`~reenact.models.fsrt.torch_model.
FSRTGenerator` wires them with the keypoint detector and the positional encodings. Module names follow the released
code so its weights load key for key (:mod:`reenact.models.fsrt.official`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from reenact.models.fsrt.transformer import Transformer


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    """``Linear -> ReLU -> ... -> Linear`` through ``sizes`` (indices 0, 2, 4, ... are the linears, as released)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class ExpressionEncoder(nn.Module):
    """Expression network ``X`` (Sec. 3.1, Eq. 8-10).

    ``F_X = X_C(F_K)`` (7x7 conv, ``n_K * n_f`` channels, keypoint-major: channel ``i * n_f + c`` is feature
    ``c`` of keypoint ``i``); ``f^(i) = sum_{x,y} H^(i)(x, y) F_X(i, c, x, y)`` (Eq. 8); ``f = concat_i f^(i)``
    (Eq. 9, ``n_K * n_f`` values); ``e = X_M(f)`` (Eq. 10, 4-layer MLP with ReLUs).

    Args:
        in_channels: channels of the keypoint detector's hourglass output (FSRT: 35).
        num_keypoints: ``n_K`` (10).
        features_per_keypoint: ``n_f`` (32).
        hidden: hidden widths of ``X_M`` (FSRT: 640, 1280, 640).
        expression_size: ``|e|`` (256).
        padding: padding of the 7x7 conv; must equal the keypoint detector's heatmap-conv padding so that the
            features and the heatmaps have the same size (FOMM/FSRT: 0).

    Forward: ``features [N, in_channels, h, w]``, ``heatmaps [N, n_K, h', w']`` -> ``e [N, expression_size]``.
    Parameter names are the released ones (``expression``, ``expression_mlp.{0,2,4,6}``).
    """

    def __init__(self, in_channels: int = 35, num_keypoints: int = 10, features_per_keypoint: int = 32,
                 hidden: Sequence[int] = (640, 1280, 640), expression_size: int = 256, padding: int = 0):
        super().__init__()
        self.num_keypoints = num_keypoints
        self.features_per_keypoint = features_per_keypoint
        self.expression = nn.Conv2d(in_channels, num_keypoints * features_per_keypoint, kernel_size=7,
                                    padding=padding)
        self.expression_mlp = _mlp([num_keypoints * features_per_keypoint, *hidden, expression_size])

    def forward(self, features: Tensor, heatmaps: Tensor) -> Tensor:
        filtered = self.expression(features)
        n, _, h, w = filtered.shape
        if heatmaps.shape[-2:] != (h, w):
            raise ValueError(f"expression features {h}x{w} and heatmaps {tuple(heatmaps.shape[-2:])} differ in size; "
                             "the 7x7 conv padding must equal the keypoint detector's")
        filtered = filtered.reshape(n, self.num_keypoints, self.features_per_keypoint, h, w)
        pooled = (heatmaps.unsqueeze(2) * filtered).sum(dim=(-2, -1))  # Eq. 8: [N, n_K, n_f]
        return self.expression_mlp(pooled.flatten(1))  # Eq. 9-10


class PatchBlock(nn.Module):
    """Patch-CNN block (SRT ``SRTConvBlock``): 3x3 conv -> ReLU -> stride-2 3x3 conv -> ReLU, no biases.

    ``[N, in_channels, H, W] -> [N, out_channels, H / 2, W / 2]``; ``out_channels`` defaults to ``2 * hidden``
    (Sec. 3.1, "Patch CNN": each block halves H and W and doubles the feature maps).
    """

    def __init__(self, in_channels: int, hidden: int | None = None, out_channels: int | None = None):
        super().__init__()
        hidden = in_channels if hidden is None else hidden
        out_channels = 2 * hidden if out_channels is None else out_channels
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, hidden, kernel_size=3, stride=1, padding=1, bias=False), nn.ReLU(),
            nn.Conv2d(hidden, out_channels, kernel_size=3, stride=2, padding=1, bias=False), nn.ReLU(),
        )
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class FSRTEncoder(nn.Module):
    """Patch CNN + transformer encoder ``E`` (Eq. 1, Sec. 3.1 "Patch CNN" and "Encoder").

    Block 0 maps the input representation (Eq. 6) to ``patch_channels`` then ``2 * patch_channels``; every
    further block doubles the width; a 1x1 conv (``per_patch_linear``) maps to ``latent_dim``. Each source image
    gives ``(H / 2^n) * (W / 2^n)`` tokens (``n = num_conv_blocks``; 1024 at 256 px); the tokens of all sources
    are concatenated and pass ``depth`` self-attention blocks (no source-ID embedding, as in OSRT).

    Args:
        in_channels: channels of the input representation ``3 + |gamma_key| + |gamma_pix| + |e|`` (FSRT: 483).
        num_conv_blocks: patch-CNN blocks (3).
        patch_channels: hidden width of the first block (96 -> 192 -> 384 -> 768).
        latent_dim: set-latent width ``d`` (768).
        depth, heads, dim_head, mlp_dim: transformer (5 blocks, 12 x 64, 1536).

    Forward: ``representation [B, S, in_channels, H, W]`` -> set-latents ``z [B, S * P, latent_dim]``.
    Parameter names are the released ones (``conv_blocks``, ``per_patch_linear``, ``transformer``).
    """

    def __init__(self, in_channels: int = 483, num_conv_blocks: int = 3, patch_channels: int = 96,
                 latent_dim: int = 768, depth: int = 5, heads: int = 12, dim_head: int = 64, mlp_dim: int = 1536):
        super().__init__()
        blocks = [PatchBlock(in_channels, hidden=patch_channels)]
        for _ in range(1, num_conv_blocks):
            blocks.append(PatchBlock(blocks[-1].out_channels))
        self.conv_blocks = nn.Sequential(*blocks)
        self.per_patch_linear = nn.Conv2d(blocks[-1].out_channels, latent_dim, kernel_size=1)
        self.transformer = Transformer(latent_dim, depth, heads, dim_head, mlp_dim, self_attention=True)
        self.num_conv_blocks = num_conv_blocks

    def forward(self, representation: Tensor) -> Tensor:
        b, s = representation.shape[:2]
        x = self.per_patch_linear(self.conv_blocks(representation.flatten(0, 1)))  # [B*S, d, h, w]
        tokens = x.flatten(2).transpose(1, 2)  # [B*S, P, d]
        # Concatenating the sources' tokens gives the set-latent representation of all of them (Sec. 3.1).
        tokens = tokens.reshape(b, s * tokens.shape[1], tokens.shape[2])
        return self.transformer(tokens)


class PixelPredictor(nn.Module):
    """Decoder attention part (released name ``allocation_transformer``): input MLP + cross-attention blocks.

    The query (Eq. 7) first passes a 2-layer MLP ``query_dim -> input_mlp_hidden -> query_dim`` (OSRT's input
    MLP), then ``depth`` blocks of cross-attention to the set-latents and feed-forward (no self-attention).
    """

    def __init__(self, query_dim: int = 480, latent_dim: int = 768, input_mlp_hidden: int = 720, depth: int = 2,
                 heads: int = 12, dim_head: int = 64, mlp_dim: int = 1536):
        super().__init__()
        self.input_mlp = nn.Sequential(nn.Linear(query_dim, input_mlp_hidden), nn.ReLU(inplace=True),
                                       nn.Linear(input_mlp_hidden, query_dim))
        self.transformer = Transformer(query_dim, depth, heads, dim_head, mlp_dim, self_attention=False,
                                       kv_dim=latent_dim)

    def forward(self, queries: Tensor, kv: list[tuple[Tensor, Tensor]]) -> Tensor:
        return self.transformer(self.input_mlp(queries), kv=kv)


class FSRTDecoder(nn.Module):
    """Transformer decoder ``D`` (Eq. 2, Sec. 3.1 "Decoder"): ``C(q) = D(Q_{I_D}(q) | {z})``.

    Args:
        query_dim: ``|gamma_key| + |gamma_pix| + |e|`` (FSRT: 160 + 64 + 256 = 480).
        latent_dim: set-latent width (768).
        input_mlp_hidden: hidden width of the input MLP (720).
        depth, heads, dim_head, mlp_dim: cross-attention blocks (FSRT: 2, 12 x 64, 1536; small decoder
            6 x 64, 768).
        render_hidden: hidden widths of the render MLP (FSRT: 4 x 1536, i.e. the 5-layer render MLP; small
            decoder: 1536, 768).
        out_channels: 3 (RGB).

    Forward: ``z [B, N, latent_dim]``, ``pixel_encoding [Q, |gamma_pix|]`` or ``[B, Q, |gamma_pix|]``,
    ``keypoint_encoding [B, |gamma_key|]``, ``expression [B, |e|]`` -> raw colours ``[B, Q, 3]``. With
    ``chunk_size`` the ``Q`` queries are decoded ``chunk_size`` at a time (each query is independent, so the
    result is the same) and the cross-attention keys/values of ``z`` are computed once for all chunks.
    Parameter names are the released ones (``allocation_transformer.*``, ``render_mlp.*``).
    """

    def __init__(self, query_dim: int = 480, latent_dim: int = 768, input_mlp_hidden: int = 720, depth: int = 2,
                 heads: int = 12, dim_head: int = 64, mlp_dim: int = 1536,
                 render_hidden: Sequence[int] = (1536, 1536, 1536, 1536), out_channels: int = 3):
        super().__init__()
        self.query_dim = query_dim
        self.allocation_transformer = PixelPredictor(query_dim, latent_dim, input_mlp_hidden, depth, heads, dim_head,
                                                     mlp_dim)
        self.render_mlp = _mlp([query_dim, *render_hidden, out_channels])

    def forward(self, z: Tensor, pixel_encoding: Tensor, keypoint_encoding: Tensor, expression: Tensor,
                chunk_size: int | None = None) -> Tensor:
        b = z.shape[0]
        kv = self.allocation_transformer.transformer.keys_values(z)
        if pixel_encoding.dim() == 2:
            pixel_encoding = pixel_encoding.unsqueeze(0).expand(b, -1, -1)
        total = pixel_encoding.shape[1]
        step = total if not chunk_size or chunk_size >= total else int(chunk_size)
        outputs = []
        for start in range(0, total, step):
            pix = pixel_encoding[:, start:start + step]
            q = pix.shape[1]
            # Eq. 7 in the released order: [gamma_key(k_D), gamma_pix(q), e_D] for every query pixel.
            queries = torch.cat([keypoint_encoding[:, None].expand(b, q, -1), pix,
                                 expression[:, None].expand(b, q, -1)], dim=-1)
            outputs.append(self.render_mlp(self.allocation_transformer(queries, kv)))
        return torch.cat(outputs, dim=1)
