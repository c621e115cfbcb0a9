"""GAN, feature-matching, equivariance and perceptual losses.

GAN losses take discriminator logits -- one tensor or a sequence of tensors (one per discriminator scale);
with a sequence the per-scale losses are summed, as FOMM does. Formulas:

- hinge (Lim & Ye 2017; Miyato et al. 2018): ``D = E[relu(1 - D(x))] + E[relu(1 + D(G))]``, ``G = -E[D(G)]``;
- LSGAN (Mao et al. 2017, in FOMM's form without the 1/2): ``D = E[(1 - D(x))^2] + E[D(G)^2]``,
  ``G = E[(1 - D(G))^2]``;
- non-saturating (Goodfellow et al. 2014, as in StyleGAN2/LIA):
  ``D = E[softplus(-D(x))] + E[softplus(D(G))]``, ``G = E[softplus(-D(G))]``.

:class:`VGG19Perceptual` is FOMM's multi-scale VGG19 perceptual loss (Siarohin et al. 2019, after Johnson
et al. 2016 / Wang et al. 2018). Its backbone is ALWAYS the real torchvision ImageNet VGG19 found through
:func:`reenact.weights.resolve` -- a missing file raises :class:`reenact.weights.MissingWeightsError` at
construction -- unless a backbone module is passed explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reenact.nn.blocks import AntiAliasInterpolation2d
from reenact.nn.tps import RandomTPS

Logits = Tensor | Sequence[Tensor]


def _as_list(x: Logits) -> list[Tensor]:
    return [x] if isinstance(x, Tensor) else list(x)


def _total(terms: list[Tensor]) -> Tensor:
    # Stacking keeps the result on the inputs' device and dtype (no CPU zero start value).
    return torch.stack(terms).sum()


def hinge_d_loss(real: Logits, fake: Logits) -> Tensor:
    """Hinge discriminator loss, summed over scales."""
    pairs = zip(_as_list(real), _as_list(fake), strict=True)
    return _total([F.relu(1.0 - r).mean() + F.relu(1.0 + f).mean() for r, f in pairs])


def hinge_g_loss(fake: Logits) -> Tensor:
    """Hinge generator loss ``-E[D(G)]``, summed over scales."""
    return _total([-f.mean() for f in _as_list(fake)])


def lsgan_d_loss(real: Logits, fake: Logits) -> Tensor:
    """Least-squares discriminator loss (targets 1 for real, 0 for fake), summed over scales."""
    pairs = zip(_as_list(real), _as_list(fake), strict=True)
    return _total([(1.0 - r).pow(2).mean() + f.pow(2).mean() for r, f in pairs])


def lsgan_g_loss(fake: Logits) -> Tensor:
    """Least-squares generator loss ``E[(1 - D(G))^2]``, summed over scales."""
    return _total([(1.0 - f).pow(2).mean() for f in _as_list(fake)])


def nonsaturating_d_loss(real: Logits, fake: Logits) -> Tensor:
    """Logistic discriminator loss ``E[softplus(-D(x))] + E[softplus(D(G))]``, summed over scales."""
    pairs = zip(_as_list(real), _as_list(fake), strict=True)
    return _total([F.softplus(-r).mean() + F.softplus(f).mean() for r, f in pairs])


def nonsaturating_g_loss(fake: Logits) -> Tensor:
    """Non-saturating generator loss ``E[softplus(-D(G))]``, summed over scales."""
    return _total([F.softplus(-f).mean() for f in _as_list(fake)])


GAN_LOSSES = {
    "hinge": (hinge_g_loss, hinge_d_loss),
    "lsgan": (lsgan_g_loss, lsgan_d_loss),
    "nonsaturating": (nonsaturating_g_loss, nonsaturating_d_loss),
}


def generator_loss(kind: str, fake: Logits) -> Tensor:
    """Generator GAN loss by name: ``"hinge"``, ``"lsgan"`` or ``"nonsaturating"``."""
    return GAN_LOSSES[kind][0](fake)


def discriminator_loss(kind: str, real: Logits, fake: Logits) -> Tensor:
    """Discriminator GAN loss by name: ``"hinge"``, ``"lsgan"`` or ``"nonsaturating"``."""
    return GAN_LOSSES[kind][1](real, fake)


def feature_matching_loss(
    real_features: Sequence[Tensor] | Sequence[Sequence[Tensor]],
    fake_features: Sequence[Tensor] | Sequence[Sequence[Tensor]],
    weights: Sequence[float] | None = None,
) -> Tensor:
    """Discriminator feature matching (pix2pixHD, Wang et al. 2018; FOMM):
    ``sum_scales sum_i w_i * mean|fake_i - real_i|`` with the real features detached.

    Args:
        real_features / fake_features: per-layer feature maps, or per-scale lists of them.
        weights: per-layer weights (default 1 each).
    """
    if real_features and isinstance(real_features[0], Tensor):
        real_scales: list[Sequence[Tensor]] = [real_features]  # type: ignore[list-item]
        fake_scales: list[Sequence[Tensor]] = [fake_features]  # type: ignore[list-item]
    else:
        real_scales = list(real_features)  # type: ignore[arg-type]
        fake_scales = list(fake_features)  # type: ignore[arg-type]
    terms = []
    for reals, fakes in zip(real_scales, fake_scales, strict=True):
        w = list(weights) if weights is not None else [1.0] * len(reals)
        terms.extend(wi * (f - r.detach()).abs().mean() for wi, r, f in zip(w, reals, fakes, strict=True))
    return _total(terms)


def r1_penalty(real_logits: Tensor, real_images: Tensor) -> Tensor:
    """R1 gradient penalty (Mescheder et al. 2018): ``E_b ||d sum D(x) / d x_b||^2``.

    ``real_images`` must have ``requires_grad=True`` when the logits were computed.
    """
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def equivariance_loss(keypoints: Tensor, keypoints_transformed: Tensor, transform: RandomTPS) -> Tensor:
    """FOMM equivariance loss ``mean |kp(x) - T(kp(T(x)))|``.

    Args:
        keypoints: ``[B, K, 2]`` detected on the original frames.
        keypoints_transformed: ``[B, K, 2]`` detected on ``transform.transform_frame(frames)``.
        transform: the :class:`reenact.nn.tps.RandomTPS` used.
    """
    return (keypoints - transform.warp_coordinates(keypoints_transformed)).abs().mean()


# --------------------------------------------------------------------------------------------- perceptual

_VGG19_CFG: tuple[int | str, ...] = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    512,
    "M",
)


def _vgg19_layer_indices() -> dict[str, int]:
    """torchvision ``vgg19().features`` indices by name: ``conv3_2``, ``relu3_2``, ``pool3``, ..."""
    names: dict[str, int] = {}
    idx, block, conv = 0, 1, 1
    for v in _VGG19_CFG:
        if v == "M":
            names[f"pool{block}"] = idx
            idx, block, conv = idx + 1, block + 1, 1
        else:
            names[f"conv{block}_{conv}"] = idx
            names[f"relu{block}_{conv}"] = idx + 1
            idx, conv = idx + 2, conv + 1
    return names


VGG19_LAYERS: dict[str, int] = _vgg19_layer_indices()

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_vgg19_features() -> nn.Sequential:
    """torchvision VGG19 ``features`` with the real ImageNet weights from ``reenact.weights``.

    Raises :class:`reenact.weights.MissingWeightsError` when ``vgg19-dcbbe1cb.pth`` is not found.
    """
    from torchvision.models import vgg19

    from reenact.weights import load_state_dict_file, resolve

    path = resolve("vgg19-imagenet")
    model = vgg19(weights=None)
    model.load_state_dict(load_state_dict_file(path))
    return model.features


class VGG19Perceptual(nn.Module):
    """Multi-scale VGG19 perceptual loss (FOMM ``Vgg19`` + ``ImagePyramide``).

    ``loss = sum_s sum_i w_i * mean |phi_i(P_s(gen)) - phi_i(P_s(target))|`` where ``P_s`` anti-alias
    downsamples by ``s`` and ``phi_i`` is the backbone activation at layer ``i`` of the ImageNet-normalised
    input. Target features carry no gradient.

    Args:
        layers: VGG19 layer names (``"relu1_1"`` ... ``"relu5_4"``, ``"conv*"``, ``"pool*"``; indices into
            ``torchvision.models.vgg19().features``) or integer indices into ``backbone``.
        weights: one weight per layer (FOMM/LIA: 10 each; FSRT: 0.01 each).
        scales: image pyramid scales (FOMM/LIA: 1, 0.5, 0.25, 0.125).
        backbone: an explicit ``nn.Sequential`` feature extractor. ``None`` (the normal case) loads the real
            torchvision VGG19 ImageNet weights via ``reenact.weights`` and raises ``MissingWeightsError``
            if they are absent -- never random weights.
        normalize: apply ImageNet mean/std to the inputs (expected in ``[0, 1]``).

    Forward: ``generated [B, 3, H, W]``, ``target [B, 3, H, W]`` in ``[0, 1]`` -> scalar.

    The frozen backbone is left out of ``state_dict()`` (it is rebuilt from the weights file at
    construction), so checkpoints of models that own this loss stay small; loading a checkpoint that does
    contain it still works.
    """

    def __init__(
        self,
        layers: Sequence[str | int] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
        weights: Sequence[float] = (10.0, 10.0, 10.0, 10.0, 10.0),
        scales: Sequence[float] = (1.0, 0.5, 0.25, 0.125),
        backbone: nn.Module | None = None,
        normalize: bool = True,
    ):
        super().__init__()
        if len(layers) != len(weights):
            raise ValueError(f"got {len(layers)} layers but {len(weights)} weights")
        indices = []
        for layer in layers:
            if isinstance(layer, str):
                if layer not in VGG19_LAYERS:
                    raise ValueError(f"unknown VGG19 layer {layer!r}; known: {', '.join(VGG19_LAYERS)}")
                indices.append(VGG19_LAYERS[layer])
            else:
                indices.append(int(layer))
        self.layer_indices = tuple(indices)
        self.layer_weights = tuple(float(w) for w in weights)
        self.scales = tuple(float(s) for s in scales)
        self.normalize = normalize
        if backbone is None:
            backbone = load_vgg19_features()
        if not isinstance(backbone, nn.Sequential):
            raise TypeError("backbone must be an nn.Sequential so layers can be addressed by index")
        last = max(self.layer_indices)
        if last >= len(backbone):
            raise ValueError(f"layer index {last} is out of range for a backbone of {len(backbone)} modules")
        self.backbone = backbone[: last + 1]
        self.backbone.eval().requires_grad_(False)
        self.pyramid = nn.ModuleList([AntiAliasInterpolation2d(3, s, persistent=False) for s in self.scales])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.register_state_dict_post_hook(_drop_backbone_keys)
        self.register_load_state_dict_pre_hook(_fill_backbone_keys)

    def train(self, mode: bool = True) -> VGG19Perceptual:
        super().train(mode)
        self.backbone.eval()  # frozen feature extractor: never switch it to training behaviour
        return self

    def features(self, x: Tensor) -> list[Tensor]:
        """Backbone activations at ``layer_indices`` for ``x [B, 3, H, W]`` in ``[0, 1]``."""
        if self.normalize:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        wanted = set(self.layer_indices)
        found: dict[int, Tensor] = {}
        for i, module in enumerate(self.backbone):
            x = module(x)
            if i in wanted:
                found[i] = x
        return [found[i] for i in self.layer_indices]

    def forward(self, generated: Tensor, target: Tensor) -> Tensor:
        total = generated.new_zeros(())
        for down in self.pyramid:
            gen_feats = self.features(down(generated))
            with torch.no_grad():
                tgt_feats = self.features(down(target))
            for w, g, t in zip(self.layer_weights, gen_feats, tgt_feats, strict=True):
                total = total + w * (g - t).abs().mean()
        return total


def _drop_backbone_keys(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any
) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + "backbone.")]:
        del state_dict[key]


def _fill_backbone_keys(
    module: nn.Module,
    state_dict: Mapping[str, Any],
    prefix: str,
    local_metadata: Any,
    strict: bool,
    missing_keys: list[str],
    unexpected_keys: list[str],
    error_msgs: list[str],
) -> None:
    # Checkpoints saved without the backbone: supply the (already loaded, real) backbone tensors so strict
    # loading succeeds and the frozen weights stay as constructed.
    if not isinstance(state_dict, dict):
        return
    for name, tensor in module.backbone.state_dict().items():  # type: ignore[union-attr]
        state_dict.setdefault(prefix + "backbone." + name, tensor)


def detached_call(module: nn.Module, *inputs: Tensor) -> Any:
    """``module(*inputs)`` with the module's parameters detached: gradients reach the inputs (and so a
    generator upstream) but never the module — how a generator step evaluates a discriminator. Toggling
    ``requires_grad`` instead is not allowed between DDP iterations."""
    from torch.func import functional_call

    params = {name: p.detach() for name, p in module.named_parameters()}
    return functional_call(module, {**params, **dict(module.named_buffers())}, inputs)
