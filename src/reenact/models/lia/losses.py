"""LIA's training objective (Wang et al. 2022, Sec. 3.4; official ``trainer.py``), built from the shared losses.

Generator: ``L_G = w_vgg * L_vgg + w_l1 * L_l1 + w_gan * L_adv`` (official weights 1 : 1 : 1) with

* ``L_vgg``: the VGG19 pyramid perceptual loss (scales 1, 1/2, 1/4, 1/8; relu1_1..relu5_1, weight 10 each),
  :class:`reenact.nn.losses.VGG19Perceptual` on images in ``[0, 1]`` (LIA maps its ``[-1, 1]`` images to
  ``[0, 1]`` before the ImageNet normalisation, so the two agree);
* ``L_l1 = mean |G(s, d) - d|`` on ``[-1, 1]`` images, as in the official code;
* ``L_adv = E[softplus(-D(G(s, d)))]`` (non-saturating, :func:`reenact.nn.losses.nonsaturating_g_loss`).

Discriminator: ``L_D = E[softplus(-D(d))] + E[softplus(D(G(s, d)))]``, optionally + lazy R1
(``r1_weight / 2 * ||grad D(d)||^2 * interval``, StyleGAN2; the official LIA trainer applies none).

Both objectives are evaluated from the same generator/discriminator state, exactly as the official
alternating update does (its discriminator step uses the reconstruction made before the generator step),
so one backward pass serves both optimisers; see :func:`frozen_logits` for how the generator's adversarial
term keeps its gradient out of the discriminator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reenact.nn.losses import (
    VGG19Perceptual,
    detached_call,
    nonsaturating_d_loss,
    nonsaturating_g_loss,
    r1_penalty,
)


def frozen_logits(discriminator: nn.Module, images: Tensor) -> Tensor:
    """``D(images)`` with the discriminator's parameters detached (see :func:`reenact.nn.losses.detached_call`)."""
    return detached_call(discriminator, images)


def pyramid_l1(generated: Tensor, target: Tensor, factors: tuple[int, ...] = (2, 4, 8)) -> Tensor:
    """Mean L1 between average-pooled copies of ``generated`` and ``target`` at ``1/f`` of the size, ``f`` in
    ``factors``: an offline structural stand-in for the VGG19 *pyramid* loss (its scales 1/2, 1/4, 1/8, LIA Sec.
    3.4), which compares coarse structure and so gives the warps a wider capture range than pixel L1. Not a
    perceptual loss (no learned features); used only where the VGG19 weights are missing (the ``tiny`` preset)."""
    terms = [F.l1_loss(F.avg_pool2d(generated, f), F.avg_pool2d(target, f)) for f in factors
             if generated.shape[-1] >= f]
    return torch.stack(terms).mean()


def generator_losses(generated: Tensor, target: Tensor, fake_logits: Tensor, perceptual: VGG19Perceptual | None,
                     perceptual_weight: float = 1.0, l1_weight: float = 1.0, gan_weight: float = 1.0,
                     keep_gan: bool = False, structural_weight: float = 0.0) -> dict[str, Tensor]:
    """Weighted generator terms and their sum ``g_total``.

    Args:
        generated, target: ``[B, 3, H, W]`` in ``[-1, 1]``.
        fake_logits: ``D(generated)`` from :func:`frozen_logits`, ``[B, 1]``.
        perceptual: the VGG19 pyramid loss, or ``None`` (term left out).
        structural_weight: weight of :func:`pyramid_l1` (the offline stand-in for the VGG19 pyramid; 0: off).
        keep_gan: keep the adversarial term (``gan_g``) even at ``gan_weight == 0`` (a reconstruction warm-up).
    """
    losses = {"l1": l1_weight * F.l1_loss(generated, target)}
    if perceptual is not None and perceptual_weight > 0:
        losses["perceptual"] = perceptual_weight * perceptual((generated + 1) / 2, (target + 1) / 2)
    if structural_weight > 0:
        losses["structural"] = structural_weight * pyramid_l1(generated, target)
    if gan_weight > 0 or keep_gan:
        losses["gan_g"] = gan_weight * nonsaturating_g_loss(fake_logits)
    losses["g_total"] = torch.stack(list(losses.values())).sum()
    return losses


def discriminator_losses(discriminator: nn.Module, real: Tensor, fake: Tensor, r1_weight: float = 0.0,
                         r1_interval: int = 1) -> dict[str, Tensor]:
    """Non-saturating discriminator loss (+ lazy R1 when ``r1_weight > 0``) and the sum ``d_total``.

    Args:
        real: ``[B, 3, H, W]`` real driving frames in ``[-1, 1]``.
        fake: generated frames (detached here).
        r1_weight: ``gamma`` of R1; the penalty is scaled by ``gamma / 2 * r1_interval`` (lazy regularisation).
    """
    if r1_weight > 0:
        real = real.detach().requires_grad_(True)
    real_logits = discriminator(real)
    fake_logits = discriminator(fake.detach())
    losses = {"gan_d": nonsaturating_d_loss(real_logits, fake_logits)}
    if r1_weight > 0:
        losses["r1"] = r1_weight / 2 * r1_interval * r1_penalty(real_logits, real)
    losses["d_total"] = torch.stack(list(losses.values())).sum()
    losses["d_real"] = real_logits.detach().mean()
    losses["d_fake"] = fake_logits.detach().mean()
    return losses
