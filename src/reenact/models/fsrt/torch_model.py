"""FSRT: Facial Scene Representation Transformer (Rochow, Schwarz and Behnke, CVPR 2024), pure PyTorch.

Equations and sections refer to the paper (``papers/003``). The pieces, in the order data flows:

* :class:`~reenact.nn.KeypointDetector` (Sec. 3.1, "Keypoint Detector"): FOMM's hourglass, 10 keypoints
  ``k_I`` in ``[-1, 1]``, heatmaps ``H_I`` and the last feature maps ``F_{I,K}``; frozen while FSRT trains.
* :class:`ExpressionEncoder` (Eq. 8-10): 7x7 conv ``X_C`` on ``F_{I,K}`` to ``n_K x n_f`` channels,
  heatmap-weighted spatial sums per keypoint, 4-layer MLP ``X_M`` to the expression vector ``e_I``.
* positional encodings (Eq. 3-5): :class:`~reenact.nn.PositionalEncoding`, pixels with ``O_pix`` octaves and
  keypoints with ``O_key`` octaves, both from the negative start octave ``-1`` so coordinates in ``(-2, 2)``
  (keypoints that left the frame) stay uniquely encodable.
* input representation ``R_S(p)`` (Eq. 6) -> patch CNN -> transformer encoder ``E`` (Eq. 1):
  :meth:`FSRTGenerator.input_representation`, :class:`FSRTEncoder`. Set-latents of several source images are
  concatenated (Sec. 3.1, "Encoder"), so any number of sources works.
* query ``Q_{I_D}(q)`` (Eq. 7) -> input MLP -> 2 cross-attention blocks -> render MLP (Eq. 2):
  :class:`FSRTDecoder`; each pixel is decoded independently, so decoding runs in chunks of pixels and its
  memory is bounded by the chunk size.

Channel order. The paper writes ``R_S(p) = [c_p, gamma_pix(p), gamma_key(k_S), e_S]`` (Eq. 6) and
``Q(q) = [gamma_pix(q), gamma_key(k_D), e_D]`` (Eq. 7); the released code concatenates the keypoint encoding
*before* the pixel encoding (``[c_p, gamma_key, gamma_pix, e]`` and ``[gamma_key, gamma_pix, e]``). The order is
a fixed permutation of the first layer's input columns; we use the released order so its weights load
unchanged.

Coordinates. Keypoints follow :mod:`reenact.nn.keypoints` (FOMM's heatmap grid). Pixel queries use the
released code's pixel centres ``(i + 0.5) / (n / 2) - 1`` (:func:`pixel_grid`). Decoder outputs are raw
colours (no sigmoid, as released: the MSE is taken on them); :meth:`FSRTGenerator.animate` clamps to
``[0, 1]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from reenact.models.fsrt.networks import (  # the generator's parts, re-exported here
    ExpressionEncoder,
    FSRTDecoder,
    FSRTEncoder,
    PatchBlock,
    PixelPredictor,
)
from reenact.nn.config import ArchitectureConfig
from reenact.nn.encoding import PositionalEncoding
from reenact.nn.keypoints import KeypointDetector, convex_hull_area, relative_keypoints


def pixel_grid(height: int, width: int, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> Tensor:
    """Normalised pixel-centre coordinates ``[H * W, 2]`` (``(x, y)``, row-major) of the decoder queries.

    ``x_j = (j + 0.5) / (W / 2) - 1`` and ``y_i = (i + 0.5) / (H / 2) - 1``: the convention of the released FSRT
    code (``make_animation``), so released weights see the coordinates they were trained with.
    """
    x = (torch.arange(width, dtype=dtype, device=device) + 0.5) / (width / 2.0) - 1.0
    y = (torch.arange(height, dtype=dtype, device=device) + 0.5) / (height / 2.0) - 1.0
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([xx, yy], dim=-1).reshape(height * width, 2)


def best_initial_frame(source_landmarks: Tensor, driving_landmarks: Tensor) -> Tensor:
    """Index of the driving frame whose facial landmarks best match the source's (Sec. 3.4; FOMM/FSRT
    ``find_best_frame``).

    Landmarks are normalised per frame by subtracting their mean and dividing by the square root of their
    convex-hull area; the frame with the smallest sum of squared differences to the source wins.

    Args:
        source_landmarks: ``[B, L, 2]`` (any unit, e.g. pixels; 68 iBUG points).
        driving_landmarks: ``[B, T, L, 2]``.

    Returns:
        ``[B]`` int64 frame indices.
    """

    def normalise(points: Tensor) -> Tensor:
        centred = points - points.mean(dim=-2, keepdim=True)
        scale = convex_hull_area(points).clamp_min(1e-12).sqrt()
        return centred / scale[..., None, None]

    source = normalise(source_landmarks.float())
    driving = normalise(driving_landmarks.float())
    distance = (driving - source[:, None]).pow(2).sum(dim=(-2, -1))  # [B, T]
    return distance.argmin(dim=1)


@dataclass(frozen=True)
class FSRTConfig(ArchitectureConfig):
    """Architecture of :class:`FSRTGenerator`, declared once: the Lightning module takes it as its ``generator``
    argument (``model.generator.*`` in configs and on the command line), and its defaults are the released sizes
    (``runs/vox256/vox256.yaml``).

    Fields:
        num_keypoints: ``n_K`` (10).
        kp_block_expansion, kp_max_features, kp_num_blocks, kp_temperature, kp_scale_factor: FOMM keypoint
            detector (FSRT: 32, 1024, 5, 0.1, 0.25; 14.15 M parameters).
        pix_octaves, pix_start_octave: pixel positional encoding (Eq. 5; FSRT: 16 from -1 -> 64 dims).
        kp_octaves, kp_start_octave: keypoint positional encoding (Eq. 4; FSRT: 4 from -1 -> 160 dims).
        expression_size, expression_features_per_kp, expression_hidden: expression network (256, 32,
            640/1280/640; 2.56 M).
        num_conv_blocks, patch_channels, latent_dim, encoder_depth, encoder_heads, encoder_dim_head,
            encoder_mlp_dim: encoder (3, 96, 768, 5, 12, 64, 1536; 29.77 M).
        input_mlp_hidden, decoder_depth, decoder_heads, decoder_dim_head, decoder_mlp_dim, render_hidden:
            decoder (720, 2, 12, 64, 1536, 4 x 1536; 15.31 M). The released small decoder is
            ``decoder_heads=6, decoder_mlp_dim=768, render_hidden=(1536, 768)``.
        render_chunk: query pixels decoded at a time by :meth:`render` / :meth:`animate` (per sample). Small
            chunks are faster, not only leaner: at 256 px (paper sizes, 2 CPU threads) 1,024 pixels per chunk
            decode about 25% faster than 16,384 (``[chunk, 1536]`` activations stay in cache), same values.
        patch_init: initialisation of the patch-CNN convolutions (Sec. 3.1, "Patch CNN"; not an architecture
            change): ``"default"`` keeps PyTorch's default (the released code's, used for released weights);
            ``"kaiming"`` draws He-normal weights for the ReLUs (``std = sqrt(2 / fan_in)``), so the bias-free CNN
            keeps the scale of its input instead of shrinking it by about ``sqrt(6)`` per conv. This makes the
            set-latents sensitive to the source image at the start of training (see the README's training recipe).
        patch_rgb_gain: factor on the first conv's weights of the 3 colour channels ``c_p`` of Eq. 6 after the
            initialisation (1: none). The colours are 3 of the input representation's channels beside the
            positional encodings and the expression; a gain > 1 lets them weigh more in the initial tokens.
        render_bias: initial bias of the render MLP's last layer (``None``: PyTorch's default); e.g. 0.5, the
            middle of the colour range, so that the first outputs are not centred on black.

    """

    num_keypoints: int = 10
    kp_block_expansion: int = 32
    kp_max_features: int = 1024
    kp_num_blocks: int = 5
    kp_temperature: float = 0.1
    kp_scale_factor: float = 0.25
    pix_octaves: int = 16
    pix_start_octave: int = -1
    kp_octaves: int = 4
    kp_start_octave: int = -1
    expression_size: int = 256
    expression_features_per_kp: int = 32
    expression_hidden: tuple[int, ...] = (640, 1280, 640)
    num_conv_blocks: int = 3
    patch_channels: int = 96
    latent_dim: int = 768
    encoder_depth: int = 5
    encoder_heads: int = 12
    encoder_dim_head: int = 64
    encoder_mlp_dim: int = 1536
    input_mlp_hidden: int = 720
    decoder_depth: int = 2
    decoder_heads: int = 12
    decoder_dim_head: int = 64
    decoder_mlp_dim: int = 1536
    render_hidden: tuple[int, ...] = (1536, 1536, 1536, 1536)
    render_chunk: int = 1024
    patch_init: str = "default"
    patch_rgb_gain: float = 1.0
    render_bias: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.patch_init not in ("default", "kaiming"):
            raise ValueError(f"patch_init must be 'default' or 'kaiming', got {self.patch_init!r}")


class FSRTGenerator(nn.Module):
    """The whole FSRT generator: keypoint detector, expression network, encoder and decoder.

    Args:
        config: the architecture (:class:`FSRTConfig`; default: the released sizes).
        **overrides: fields of :class:`FSRTConfig` replaced on top of ``config``, e.g.
            ``FSRTGenerator(latent_dim=96)``.

    Submodule names equal the released checkpoints' top-level names (``kp_detector``, ``expression_encoder``,
    ``encoder``, ``decoder``), see :mod:`reenact.models.fsrt.official`.
    """

    def __init__(self, config: FSRTConfig | Mapping[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__()
        c = self.config = FSRTConfig.resolve(config, **overrides)
        self.num_keypoints = c.num_keypoints
        self.render_chunk = c.render_chunk
        self.num_conv_blocks = c.num_conv_blocks
        self.kp_detector = KeypointDetector(
            num_keypoints=c.num_keypoints, num_channels=3, block_expansion=c.kp_block_expansion,
            max_features=c.kp_max_features, num_blocks=c.kp_num_blocks, temperature=c.kp_temperature,
            scale_factor=c.kp_scale_factor, estimate_jacobian=False, pad=0,
        )
        self.pixel_encoding = PositionalEncoding(c.pix_octaves, c.pix_start_octave)
        self.keypoint_encoding = PositionalEncoding(c.kp_octaves, c.kp_start_octave)
        self.expression_encoder = ExpressionEncoder(
            in_channels=self.kp_detector.predictor.out_filters, num_keypoints=c.num_keypoints,
            features_per_keypoint=c.expression_features_per_kp, hidden=tuple(c.expression_hidden),
            expression_size=c.expression_size, padding=0,
        )
        pix_dim = self.pixel_encoding.output_dim(2)
        kp_dim = self.keypoint_encoding.output_dim(2 * c.num_keypoints)
        self.encoder = FSRTEncoder(
            in_channels=3 + kp_dim + pix_dim + c.expression_size, num_conv_blocks=c.num_conv_blocks,
            patch_channels=c.patch_channels, latent_dim=c.latent_dim, depth=c.encoder_depth, heads=c.encoder_heads,
            dim_head=c.encoder_dim_head, mlp_dim=c.encoder_mlp_dim,
        )
        self.decoder = FSRTDecoder(
            query_dim=kp_dim + pix_dim + c.expression_size, latent_dim=c.latent_dim,
            input_mlp_hidden=c.input_mlp_hidden,
            depth=c.decoder_depth, heads=c.decoder_heads, dim_head=c.decoder_dim_head, mlp_dim=c.decoder_mlp_dim,
            render_hidden=tuple(c.render_hidden),
        )
        self.kp_detector_frozen = True
        self.set_kp_detector_trainable(False)
        self.initialise(c.patch_init, c.patch_rgb_gain, c.render_bias)

    def initialise(self, patch_init: str = "default", patch_rgb_gain: float = 1.0,
                   render_bias: float | None = None) -> None:
        """Training-start initialisation of the patch CNN and the render MLP (arguments: class docstring)."""
        if patch_init not in ("default", "kaiming"):
            raise ValueError(f"patch_init must be 'default' or 'kaiming', got {patch_init!r}")
        convs = [m for m in self.encoder.conv_blocks.modules() if isinstance(m, nn.Conv2d)]
        with torch.no_grad():
            if patch_init == "kaiming":
                for conv in convs:
                    nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
            if patch_rgb_gain != 1.0:
                convs[0].weight[:, :3].mul_(patch_rgb_gain)  # c_p comes first in R_S(p) (Eq. 6, released order)
            if render_bias is not None:
                last = self.decoder.render_mlp[-1]
                if isinstance(last, nn.Linear) and last.bias is not None:
                    last.bias.fill_(render_bias)

    @torch.no_grad()
    def positional_attention_init(self, images: Tensor, keypoints: Tensor, expression: Tensor,
                                  position_scale: float = 4.0, match_gain: float = 1.0) -> float:
        """Data-dependent training-start initialisation that makes the decoder look up the source by position.

        Untrained, the decoder's cross-attention (Eq. 2) is near uniform over the set-latent tokens, so every
        query pixel renders the same mean colour, and learning to attend to the right tokens is slow (a long
        plateau at CPU scale). Positions are in both inputs already: ``gamma_pix(p)`` in the encoder's input
        representation (Eq. 6) and ``gamma_pix(q)`` in the query (Eq. 7). This init makes head 0 of the first
        cross-attention block compare them:

        1. the first ``P = |gamma_pix|`` outputs of the per-patch linear are the least-squares linear read-out of
           ``position_scale * gamma_pix(token centre)`` from the patch-CNN features of ``images`` (the scale keeps
           them in the residual stream through the encoder's blocks);
        2. the decoder's input MLP passes ``gamma_pix(q)`` through unchanged (``relu(x) - relu(-x)`` on ``2P``
           hidden units) into the same query channels, zeroing the other units' contribution to them;
        3. head 0's ``q`` and ``k`` projections read those channels with gain ``match_gain``, so its logits are
           ``~ gamma_pix(q) . gamma_pix(p)``, which peaks at the token under the query (Eq. 5's encoding is a
           sum of ``cos(2^o pi (q - p))`` terms).

        Only initial weights change; the architecture and every loss are the paper's. Released weights are
        loaded over it (it is a training-start choice, like :meth:`initialise`).

        Args:
            images: ``[N, 3, H, W]`` source images of the training data; keypoints ``[N, K, 2]``, expression
                ``[N, |e|]`` theirs.
            position_scale, match_gain: see above.

        Returns:
            The read-out's R^2 on ``images`` (how well the patch features locate their token; ~0.9 at 64 px).
        """
        representation = self.input_representation(images[:, None], keypoints[:, None], expression[:, None])
        features = self.encoder.conv_blocks(representation.flatten(0, 1))  # [N, C, h, w]
        n, channels, h, w = features.shape
        flat = features.flatten(2).transpose(1, 2).reshape(n * h * w, channels).double()
        centres = self.pixel_encoding(pixel_grid(h, w, images.dtype, images.device))  # [h*w, P]
        size = centres.shape[1]
        target = (position_scale * centres).repeat(n, 1).double()
        design = torch.cat([flat, torch.ones_like(flat[:, :1])], dim=1)
        solution = torch.linalg.lstsq(design, target).solution  # [C + 1, P]
        residual = (design @ solution - target).pow(2).sum()
        r2 = float(1 - residual / (target - target.mean(0)).pow(2).sum().clamp_min(1e-12))
        linear = self.encoder.per_patch_linear
        if size > linear.out_channels:
            raise ValueError(f"latent_dim {linear.out_channels} is smaller than the pixel encoding ({size})")
        linear.weight[:size] = solution[:-1].T.to(linear.weight)[:, :, None, None]
        linear.bias[:size] = solution[-1].to(linear.bias)

        offset = self.keypoint_encoding.output_dim(2 * self.num_keypoints)  # gamma_pix follows gamma_key (Eq. 7)
        mlp = self.decoder.allocation_transformer.input_mlp
        first, second = mlp[0], mlp[2]
        if 2 * size > first.out_features:
            raise ValueError(f"input_mlp_hidden {first.out_features} is smaller than 2 x the pixel encoding")
        channels_q = torch.arange(size, device=first.weight.device)
        first.weight[: 2 * size] = 0
        first.bias[: 2 * size] = 0
        first.weight[channels_q, offset + channels_q] = 1.0
        first.weight[size + channels_q, offset + channels_q] = -1.0
        second.weight[:, : 2 * size] = 0
        second.weight[offset: offset + size] = 0
        second.bias[offset: offset + size] = 0
        second.weight[offset + channels_q, channels_q] = 1.0
        second.weight[offset + channels_q, size + channels_q] = -1.0

        attention = self.decoder.allocation_transformer.transformer.layers[0][0].fn
        head = attention.to_q.weight.shape[0] // attention.heads
        used = min(size, head)
        attention.to_q.weight[:head] = 0
        attention.to_kv.weight[:head] = 0  # the first rows of to_kv are the keys of head 0
        rows = torch.arange(used, device=attention.to_q.weight.device)
        attention.to_q.weight[rows, offset + rows] = match_gain
        attention.to_kv.weight[rows, rows] = match_gain
        return r2

    # ------------------------------------------------------------------------------------------ freezing
    def set_kp_detector_trainable(self, trainable: bool) -> None:
        """Train the keypoint detector (pretraining stage) or freeze it (FSRT training, Sec. 3.3: "not trained
        further"): frozen means no gradient and BatchNorm in eval mode whatever ``train()`` is called with."""
        self.kp_detector_frozen = not trainable
        self.kp_detector.requires_grad_(trainable)
        self.kp_detector.train(trainable and self.training)

    def train(self, mode: bool = True) -> FSRTGenerator:
        super().train(mode)
        if self.kp_detector_frozen:
            self.kp_detector.eval()
        return self

    # ------------------------------------------------------------------------------------------ pieces
    def detect(self, images: Tensor) -> dict[str, Tensor]:
        """Keypoint detector on ``images [N, 3, H, W]``: ``keypoints [N, K, 2]``, ``heatmaps [N, K, h', w']``,
        ``features [N, C, h, w]``. No gradient flows into the detector while it is frozen."""
        if self.kp_detector_frozen:
            with torch.no_grad():
                return self.kp_detector(images)
        return self.kp_detector(images)

    def extract(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Keypoints ``k_I [N, K, 2]`` and expression vectors ``e_I [N, |e|]`` (Eq. 8-10) of ``images``."""
        detected = self.detect(images)
        return detected["keypoints"], self.expression_encoder(detected["features"], detected["heatmaps"])

    def encode_keypoints(self, keypoints: Tensor) -> Tensor:
        """``gamma_key`` (Eq. 4): ``[..., K, 2] -> [..., 4 * O_key * K]`` on the flattened ``(x0, y0, x1, ...)``."""
        return self.keypoint_encoding(keypoints.flatten(-2))

    def input_representation(self, images: Tensor, keypoints: Tensor, expression: Tensor) -> Tensor:
        """``R_S(p)`` (Eq. 6) for every pixel of every source image.

        Args:
            images: ``[B, S, 3, H, W]``; keypoints: ``[B, S, K, 2]``; expression: ``[B, S, |e|]``.

        Returns:
            ``[B, S, 3 + |gamma_key| + |gamma_pix| + |e|, H, W]`` in the released channel order
            ``[c_p, gamma_key(k_S), gamma_pix(p), e_S]`` (module docstring).
        """
        b, s, _, h, w = images.shape
        pix = self.pixel_encoding(pixel_grid(h, w, images.dtype, images.device))  # [HW, P]
        pix = pix.transpose(0, 1).reshape(1, 1, -1, h, w).expand(b, s, -1, -1, -1)
        key = self.encode_keypoints(keypoints)[..., None, None].expand(-1, -1, -1, h, w)
        expr = expression[..., None, None].expand(-1, -1, -1, h, w)
        return torch.cat([images, key, pix, expr], dim=2)

    def encode(self, images: Tensor, keypoints: Tensor, expression: Tensor) -> Tensor:
        """Set-latent representation ``{z}`` (Eq. 1) of ``S`` source images: ``[B, S * P, latent_dim]``."""
        return self.encoder(self.input_representation(images, keypoints, expression))

    def decode(self, z: Tensor, pixels: Tensor, keypoints: Tensor, expression: Tensor,
               chunk_size: int | None = None) -> Tensor:
        """Raw colours ``C(q)`` (Eq. 2) of query pixels.

        Args:
            z: ``[B, N, latent_dim]``.
            pixels: ``[Q, 2]`` (shared by the batch) or ``[B, Q, 2]`` normalised coordinates (:func:`pixel_grid`).
            keypoints: driving keypoints ``k_D [B, K, 2]``; expression: ``e_D [B, |e|]``.
            chunk_size: decode this many queries at a time (``None``: all at once).

        Returns:
            ``[B, Q, 3]`` (unclamped).
        """
        return self.decoder(z, self.pixel_encoding(pixels), self.encode_keypoints(keypoints), expression,
                            chunk_size=chunk_size)

    def render(self, z: Tensor, keypoints: Tensor, expression: Tensor, height: int, width: int,
               chunk_size: int | None = None) -> Tensor:
        """All ``H x W`` pixels, decoded ``chunk_size`` (default ``render_chunk``) at a time -> ``[B, 3, H, W]``
        raw colours."""
        pixels = pixel_grid(height, width, z.dtype, z.device)
        out = self.decode(z, pixels, keypoints, expression, chunk_size=chunk_size or self.render_chunk)
        return out.transpose(1, 2).reshape(z.shape[0], -1, height, width)

    # ------------------------------------------------------------------------------------------ API
    def forward(self, source: Tensor, driving: Tensor, chunk_size: int | None = None) -> dict[str, Tensor]:
        """Self-contained reconstruction: ``source [B, S, 3, H, W]``, ``driving [B, 3, H, W]`` -> dict with
        ``generated [B, 3, H, W]`` (raw), ``z``, keypoints and expression vectors of sources and driving."""
        b, s = source.shape[:2]
        kp, expr = self.extract(torch.cat([source.flatten(0, 1), driving], dim=0))
        kp_source, kp_driving = kp[: b * s].unflatten(0, (b, s)), kp[b * s:]
        expr_source, expr_driving = expr[: b * s].unflatten(0, (b, s)), expr[b * s:]
        z = self.encode(source, kp_source, expr_source)
        generated = self.render(z, kp_driving, expr_driving, *driving.shape[-2:], chunk_size=chunk_size)
        return {"generated": generated, "z": z, "keypoints_source": kp_source, "keypoints_driving": kp_driving,
                "expression_source": expr_source, "expression_driving": expr_driving}

    @torch.no_grad()
    def animate(self, source: Tensor, driving: Tensor, relative: bool = False, adapt_scale: bool = True,
                initial_index: Tensor | None = None, chunk_size: int | None = None) -> Tensor:
        """Animate ``S`` source images with a driving video (Sec. 3.4).

        The sources are encoded once; every driving frame is then decoded pixel-chunk by pixel-chunk.

        Args:
            source: ``[B, S, 3, H, W]`` in ``[0, 1]``, any ``S >= 1``.
            driving: ``[B, T, 3, H, W]`` in ``[0, 1]``.
            relative: relative motion transfer (FOMM): ``k = k_S + (k_D,t - k_D,initial) * s`` with the keypoints
                ``k_S`` of the first source image; otherwise the driving keypoints are used as they are. The
                expression vector is always the driving frame's, as is (Sec. 3.4).
            adapt_scale: ``s = sqrt(hull area(k_S) / hull area(k_D,initial))`` instead of 1.
            initial_index: ``[B]`` index of the driving frame aligned with the source (e.g. from
                :func:`best_initial_frame`); default: frame 0.
            chunk_size: query pixels decoded at a time (default ``render_chunk``).

        Returns:
            ``[B, T, 3, H, W]`` clamped to ``[0, 1]``.
        """
        if source.dim() != 5 or driving.dim() != 5:
            raise ValueError(f"source and driving must be [B, S, 3, H, W] / [B, T, 3, H, W], got "
                             f"{tuple(source.shape)} and {tuple(driving.shape)}")
        b, s = source.shape[:2]
        t = driving.shape[1]
        kp_source, expr_source = self.extract(source.flatten(0, 1))
        z = self.encode(source, kp_source.unflatten(0, (b, s)), expr_source.unflatten(0, (b, s)))
        kp_initial = None
        if relative:
            index = torch.zeros(b, dtype=torch.long, device=driving.device) if initial_index is None else initial_index
            initial = driving[torch.arange(b, device=driving.device), index.to(driving.device)]
            kp_initial = self.extract(initial)[0]
        frames = []
        for i in range(t):
            kp_driving, expr_driving = self.extract(driving[:, i])
            if kp_initial is not None:
                kp_driving = relative_keypoints(kp_source.unflatten(0, (b, s))[:, 0], kp_driving, kp_initial,
                                                adapt_scale=adapt_scale)
            frame = self.render(z, kp_driving, expr_driving, *driving.shape[-2:], chunk_size=chunk_size)
            frames.append(frame.clamp(0.0, 1.0))
        return torch.stack(frames, dim=1)


__all__ = ["ExpressionEncoder", "FSRTConfig", "FSRTDecoder", "FSRTEncoder", "FSRTGenerator", "PatchBlock",
           "PixelPredictor", "best_initial_frame", "pixel_grid"]
