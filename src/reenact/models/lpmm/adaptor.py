"""LP-adaptor (LPMM, Lee et al. 2023, Sec. 3.3) and the backbone protocol it is defined against.

The paper's backbone is a latent talking-head model with a pose encoder ``E: image -> v in R^w`` and a
generator ``G`` that renders a fixed identity with pose ``v``. :class:`PoseLatentBackbone` is that protocol;
:class:`LIABackbone` implements it for LIA, where the pose latent is the motion magnitude vector ``alpha``
(``w = 20``, LIA's ``A_{r->d}``; LPMM Sec. 4.2) and ``G(identity, v)`` renders ``w_a + sum_i v_i d_i`` with the
identity image's appearance code and skip features (absolute LIA). Another backbone plugs in by
implementing the protocol and adding a builder to :data:`BACKBONES`.

The adaptor ``D: R^k -> R^w`` is a three-layer MLP with ELU after every intermediate layer (following
StyleRig's RigNet); its output ``d`` is a residual on the mean pose latent ``v_bar`` of the training set:
``v_hat = v_bar + d``. Training (backbone and LP-regressor ``F`` frozen):

    L_total    = lambda_rgb L_rgb + lambda_pose-reg L_pose-reg                       (Eq. 2)
    L_rgb      = || G(D(p^(I))) - G(E(I)) ||_1,   p^(I) = F(I)                        (Eq. 3)
    L_pose-reg = || D(F(G(v_bar))) ||_1                                              (Eq. 4)

where ``D(.)`` in Eq. 3 is the full ``v_bar + d`` and in Eq. 4 the residual ``d`` (the paper: "residual value
d ... should be zero" for the parameters of the average-pose image). Norms are means over elements.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reenact.models.lia.torch_model import LIAGenerator


@runtime_checkable
class PoseLatentBackbone(Protocol):
    """A latent talking-head generator LPMM can drive. Images are ``[B, 3, H, W]`` in ``[0, 1]``.

    Attributes:
        pose_dim: ``w``, the size of the pose latent.
        image_size: the side of the images it works at.
    """

    pose_dim: int
    image_size: int

    def encode_identity(self, image: Tensor) -> Any:
        """An opaque identity representation of ``image`` (batch ``B``), reusable for many poses."""
        ...

    def encode_pose(self, image: Tensor) -> Tensor:
        """The pose latent ``v = E(image)``, ``[B, w]``."""
        ...

    def generate(self, identity: Any, pose: Tensor) -> Tensor:
        """``G``: render ``identity`` (batch 1 or ``B``) with ``pose [B, w]`` -> ``[B, 3, H, W]`` in ``[0, 1]``."""
        ...


class LIABackbone(nn.Module):
    """:class:`PoseLatentBackbone` over a :class:`LIAGenerator`: ``v = alpha`` (the 20 motion magnitudes),
    identity = ``(w_a, skip features)``, ``G(identity, v) = synthesis(w_a + D v)``. Frozen: no parameter
    requires grad and :meth:`train` keeps it in eval mode.
    """

    def __init__(self, generator: LIAGenerator) -> None:
        super().__init__()
        self.generator = generator
        self.generator.requires_grad_(False)
        self.pose_dim = generator.motion_dim
        self.image_size = generator.size
        self.eval()

    def train(self, mode: bool = True) -> LIABackbone:
        return super().train(False)

    def encode_identity(self, image: Tensor) -> tuple[Tensor, list[Tensor]]:
        return self.generator.encode(image * 2 - 1)

    def encode_pose(self, image: Tensor) -> Tensor:
        return self.generator.motion(image * 2 - 1)

    def generate(self, identity: tuple[Tensor, list[Tensor]], pose: Tensor) -> Tensor:
        w_a, feats = identity
        if w_a.shape[0] != pose.shape[0]:
            w_a = w_a.expand(pose.shape[0], -1)
        return ((self.generator.synthesize(w_a, feats, pose) + 1) / 2).clamp(0, 1)


def build_lia_backbone(config: dict[str, Any]) -> LIABackbone:
    """A frozen LIA backbone from generator keyword arguments (see ``LIA.generator_kwargs``)."""
    return LIABackbone(LIAGenerator(**config))


#: Backbone builders by name: ``config dict -> PoseLatentBackbone`` module.
BACKBONES: dict[str, Callable[[dict[str, Any]], nn.Module]] = {"lia": build_lia_backbone}


class LPAdaptor(nn.Module):
    """``D: p [B, k] -> v_hat = v_bar + d [B, w]``, ``d`` from Linear-ELU-Linear-ELU-Linear.

    The last layer starts at zero, so an untrained adaptor outputs the mean pose ``v_bar`` (a neutral start
    that also satisfies Eq. 4 from the first step).

    The MLP reads the parameters in units of their standard deviations, ``p / sigma`` (``input_scale``, the
    basis' per-component std, set with :meth:`set_input_scale` before training): the raw LP parameters are
    landmark displacements in frame units, std 0.004-0.12 over the 40 components, so a default-initialised first
    layer barely responds to them and the adaptor stayed near ``v_bar`` (measured on the quick benchmark's
    LPMM, raw inputs: on 15 of the 20 latent components its output varied 10-500x less, over the 48 protocol
    frames, than the pose latents it has to match). Dividing by a fixed ``sigma`` is a
    reparametrisation of the first layer (``W / sigma``), not a change of the function class of Eq. 2-4
    (``sigma`` is floored at 1 % of its largest entry).
    Checkpoints from before the scale load with ``input_scale = 1``, which is how they were trained.

    Buffers: ``latent_mean [w]`` (``v_bar``), ``latent_mean_ready`` (``[]`` bool), ``input_scale [k]``.
    """

    def __init__(self, num_params: int, pose_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(num_params, hidden), nn.ELU(),
            nn.Linear(hidden, hidden), nn.ELU(),
            nn.Linear(hidden, pose_dim),
        )
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        self.register_buffer("latent_mean", torch.zeros(pose_dim))
        self.register_buffer("latent_mean_ready", torch.tensor(False))
        self.register_buffer("input_scale", torch.ones(num_params))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # Adaptors saved before the input scale existed were trained on raw parameters: keep the scale at 1.
        missing_keys: list[str] = args[2]
        absent = prefix + "input_scale" not in state_dict
        super()._load_from_state_dict(state_dict, prefix, *args)
        if absent and prefix + "input_scale" in missing_keys:
            missing_keys.remove(prefix + "input_scale")
            self.input_scale.fill_(1.0)

    @property
    def trained(self) -> bool:
        """Whether the output layer has left its zero start (an untrained adaptor gives ``v_bar`` for every ``p``)."""
        return bool(self.mlp[-1].weight.detach().abs().sum() > 0)

    @torch.no_grad()
    def set_input_scale(self, std: Tensor) -> None:
        """Read parameters in units of ``std [k]`` (the basis' standard deviations). Only for an untrained
        adaptor, whose output does not depend on the scale; a trained one keeps the scale it learned with."""
        if self.trained:
            raise ValueError("the LP-adaptor is already trained; changing its input scale would change its output")
        # Components with (near) zero variance would turn float rounding of an edit's landmark round trip into
        # large inputs: the scale is floored at 1 % of the largest std (real faces span about 3 % to 100 %).
        self.input_scale.copy_(std.clamp_min(max(1e-2 * float(std.max()), 1e-8)).to(self.input_scale))

    @torch.no_grad()
    def set_latent_mean(self, latents: Tensor) -> None:
        """``v_bar`` = the mean of pose latents ``[N, w]`` encoded from training frames."""
        self.latent_mean.copy_(latents.mean(0).to(self.latent_mean))
        self.latent_mean_ready.fill_(True)

    def residual(self, params: Tensor) -> Tensor:
        """``d [B, w]`` for ``params [B, k]``."""
        return self.mlp(params / self.input_scale.to(params.dtype))

    def forward(self, params: Tensor) -> Tensor:
        """``v_hat = v_bar + d`` for ``params [B, k]``."""
        return self.latent_mean.to(params.dtype) + self.residual(params)


def rgb_loss(backbone: PoseLatentBackbone, identity: Any, predicted_pose: Tensor, target_pose: Tensor) -> Tensor:
    """Eq. 3: ``mean |G(v_hat) - G(E(I))|`` with the same fixed identity; the target carries no gradient."""
    with torch.no_grad():
        target = backbone.generate(identity, target_pose)
    return F.l1_loss(backbone.generate(identity, predicted_pose), target)


def pose_regularisation(adaptor: LPAdaptor, base_params: Tensor) -> Tensor:
    """Eq. 4: ``mean |d(F(G(v_bar)))|`` for the parameters ``base_params [B, k] = F(G(v_bar))`` of the
    mean-pose image (computed with the frozen ``F`` and ``G``)."""
    return adaptor.residual(base_params).abs().mean()
