"""Lightning wrapper of :class:`~reenact.models.lia.torch_model.LIAGenerator` (``reenact fit --model lia``).

Training (Wang et al. 2022, Sec. 3.4, official ``train.py``/``trainer.py``): pairs of frames of one video,
the generator reconstructs the driving frame from the source with the driving frame's motion (absolute
mode); perceptual + L1 + non-saturating GAN against a StyleGAN2 discriminator, Adam with StyleGAN2's lazy-
regularisation ratios (``lr * r/(r+1)``, ``betas = (0, 0.99 ** (r/(r+1)))``, ``r = 4`` for G and 16 for D;
official ``lr = 0.002``).

Optimisation is manual (two optimisers) and DDP-safe without ``find_unused_parameters``: one backward pass
over ``L_G + L_D`` per batch, where every trainable parameter receives its gradient (the generator's only
from ``L_G`` through a parameter-detached discriminator call, the discriminator's only from ``L_D``), then
both optimisers step. Each batch therefore makes two optimiser steps and advances ``trainer.global_step`` by
2 (Lightning counts the steps of every optimiser), so ``--trainer.max_steps N`` trains ``N / 2`` batches.
"""

from __future__ import annotations

from typing import Any

import torch

from reenact.data.datasets import SamplingSpec
from reenact.models.base import ReenactmentModule
from reenact.models.lia.losses import discriminator_losses, frozen_logits, generator_losses
from reenact.models.lia.torch_model import LIAConfig, LIAGenerator, StyleGAN2Discriminator, init_source_reconstruction
from reenact.nn.optim import adam


def to_signed(image: torch.Tensor) -> torch.Tensor:
    """``[0, 1]`` -> ``[-1, 1]`` (LIA's image range)."""
    return image * 2 - 1


def to_unit(image: torch.Tensor) -> torch.Tensor:
    """``[-1, 1]`` -> ``[0, 1]``, clamped."""
    return ((image + 1) / 2).clamp(0, 1)


class LIA(ReenactmentModule):
    """Latent Image Animator.

    Args:
        image_size: frame side (power of two; official 256).
        generator: the generator's architecture besides ``image_size``,
            :class:`~reenact.models.lia.torch_model.LIAConfig` (``style_dim``, ``motion_dim``, ``channel_base``,
            ``channel_max``; official 512, 20, 16384, 512), or a mapping of its fields; stored as a mapping.
        disc_channel_base, disc_channel_max: discriminator channels (``None``: as the generator).
        lr: base Adam learning rate (official 0.002), scaled by the lazy-regularisation ratios.
        g_reg_every, d_reg_every: StyleGAN2 lazy-regularisation intervals that set those ratios (4, 16); the
            discriminator's is also the R1 interval.
        perceptual_weight: weight of the VGG19 pyramid loss (official 1, with 10 per layer inside); 0 disables
            it (no ImageNet weights needed). Needs the real VGG19 weights otherwise (``reenact.weights``).
        structural_weight: weight of the offline structural stand-in for the VGG19 pyramid term,
            ``structural_loss`` (CPU-scale recipe; 0 = off, the paper's setting). Never VGG with random weights.
        structural_loss: which stand-in: ``"pyramid_l1"`` (:func:`~reenact.models.lia.losses.pyramid_l1`, L1 at
            1/2, 1/4, 1/8 of the size, the VGG pyramid's scales).
        l1_weight, gan_weight: weights of the L1 and adversarial generator terms (official 1, 1).
        r1_weight: R1 ``gamma`` (official LIA: 0, i.e. none).
        gan_start_steps: reconstruction warm-up (CPU-scale recipe): the generator's adversarial term is off
            for the first ``gan_start_steps`` optimiser steps (``global_step``, 2 per batch) and ramps in
            linearly over the next ``gan_ramp_steps``; the discriminator trains throughout. 0 (official): the
            full adversarial term from step 0.
        gan_ramp_steps: length of that linear ramp (0: a step).
        source_init: start the generator at rendering its source (CPU-scale recipe,
            :func:`~reenact.models.lia.torch_model.init_source_reconstruction`: identity warps, the finest encoder
            level and RGB head passing the image through). ``False`` (official): StyleGAN2's random init.
            Loaded weights replace it.
        generator_beta1: Adam ``beta1`` of the generator (official 0, StyleGAN2's; the CPU-scale recipe uses
            0.9, whose momentum speeds up the short, mostly reconstructive run).
    """

    registry_name = "lia"
    generator_config = LIAConfig
    train_sampling = SamplingSpec(mode="pair", num_source=1, num_driving=1)

    def __init__(self, image_size: int = 64,
                 generator: LIAConfig = LIAConfig(),  # noqa: B008 - frozen, shared safely
                 disc_channel_base: int | None = None, disc_channel_max: int | None = None,
                 lr: float = 2e-3, g_reg_every: int = 4, d_reg_every: int = 16, perceptual_weight: float = 0.0,
                 l1_weight: float = 1.0, gan_weight: float = 1.0, r1_weight: float = 0.0,
                 structural_weight: float = 0.0, structural_loss: str = "pyramid_l1", gan_start_steps: int = 0,
                 gan_ramp_steps: int = 0, source_init: bool = False, generator_beta1: float = 0.0) -> None:
        super().__init__(image_size=image_size)
        self.save_hyperparameters()
        config = self.generator_config_from_hparams()
        if structural_loss != "pyramid_l1":
            raise ValueError(f"structural_loss must be 'pyramid_l1', got {structural_loss!r}")
        self.automatic_optimization = False
        self.generator = LIAGenerator(image_size, config)
        if source_init:
            init_source_reconstruction(self.generator)
        self.discriminator = StyleGAN2Discriminator(
            size=image_size, channel_base=disc_channel_base or config.channel_base,
            channel_max=disc_channel_max or config.channel_max,
        )
        from reenact.nn.losses import VGG19Perceptual

        # Built when training starts (ReenactmentModule.setup): inference and loading need no VGG19 file.
        self.defer_perceptual_loss(VGG19Perceptual if perceptual_weight > 0 else None)

    def generator_kwargs(self) -> dict[str, int]:
        """Keyword arguments that rebuild :attr:`generator` (used by LPMM to load this model as its backbone)."""
        return {"size": self.hparams.image_size, **self.hparams["generator"]}

    # ------------------------------------------------------------------------------------------ animate
    def animate(self, source: torch.Tensor, driving: torch.Tensor, *, relative: bool = False) -> torch.Tensor:
        """``source [B, S, 3, H, W]`` (first frame used), ``driving [B, T, 3, H, W]`` in ``[0, 1]`` ->
        ``[B, T, 3, H, W]``.

        Absolute: ``z_t = w_a + D alpha_t``; relative: ``z_t = w_a + D alpha_t - D alpha_0 + D alpha_src``
        (LIA's demo), with ``alpha_0`` the first driving frame's magnitudes. Gradient mode is the caller's.
        """
        if driving.dim() != 5:
            raise ValueError(f"driving must be [B, T, 3, H, W], got {tuple(driving.shape)}")
        generator = self.generator
        batch, frames = driving.shape[:2]
        w_a, feats = generator.encode(to_signed(source[:, 0]))
        alphas = generator.motion(to_signed(driving.flatten(0, 1))).view(batch, frames, -1)
        alpha_source = generator.enc.motion(w_a) if relative else None
        outputs = []
        for t in range(frames):
            if relative:
                image = generator.synthesize(w_a, feats, alphas[:, t], alphas[:, 0], alpha_source)
            else:
                image = generator.synthesize(w_a, feats, alphas[:, t])
            outputs.append(to_unit(image))
        return torch.stack(outputs, 1)

    # ----------------------------------------------------------------------------------------- training
    def gan_scale(self, step: int | None = None) -> float:
        """Factor on ``gan_weight`` at optimiser step ``step`` (default ``global_step``): 0 during the
        reconstruction warm-up, then a linear ramp to 1 (see ``gan_start_steps``, ``gan_ramp_steps``)."""
        hp = self.hparams
        step = self.global_step if step is None else step
        if step < hp.gan_start_steps:
            return 0.0
        if hp.gan_ramp_steps <= 0:
            return 1.0
        return min(1.0, (step - hp.gan_start_steps + 1) / hp.gan_ramp_steps)

    def losses(self, batch: dict[str, Any], r1: bool = False) -> dict[str, torch.Tensor]:
        """Generator and discriminator terms of one pair batch (images converted to ``[-1, 1]``).

        ``g_total`` and ``d_total`` are the two objectives; backpropagating their sum gives each network
        exactly its own gradient (see :mod:`reenact.models.lia.losses`).
        """
        hp = self.hparams
        source, driving = to_signed(batch["source"][:, 0]), to_signed(batch["driving"][:, 0])
        generated = self.generator(source, driving)
        fake_logits = frozen_logits(self.discriminator, generated)
        # During the warm-up the adversarial term stays in the graph with weight 0 (every generator parameter
        # keeps a gradient, as DDP without find_unused_parameters needs).
        losses = generator_losses(generated, driving, fake_logits, self.perceptual, hp.perceptual_weight,
                                  hp.l1_weight, hp.gan_weight * self.gan_scale(), keep_gan=hp.gan_weight > 0,
                                  structural_weight=hp.structural_weight)
        # The discriminator always trains (even with gan_weight = 0), so every parameter gets a gradient in
        # every backward pass, which DDP without find_unused_parameters requires.
        losses.update(discriminator_losses(self.discriminator, driving, generated, hp.r1_weight if r1 else 0.0,
                                           hp.d_reg_every))
        return losses

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        optimizer_g, optimizer_d = self.optimizers()
        apply_r1 = self.hparams.r1_weight > 0 and batch_idx % self.hparams.d_reg_every == 0
        losses = self.losses(batch, r1=apply_r1)
        total = losses["g_total"] + losses["d_total"]
        optimizer_g.zero_grad(set_to_none=True)
        optimizer_d.zero_grad(set_to_none=True)
        self.manual_backward(total)
        optimizer_g.step()
        optimizer_d.step()
        batch_size = batch["source"].shape[0]
        for name, value in losses.items():
            self.log(f"train/{name}", value.detach(), prog_bar=name in ("g_total", "d_total"), batch_size=batch_size)
        return total.detach()

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        hp = self.hparams
        g_ratio = hp.g_reg_every / (hp.g_reg_every + 1)
        d_ratio = hp.d_reg_every / (hp.d_reg_every + 1)
        generator_params = [p for p in self.generator.parameters() if p.requires_grad]
        optimizer_g = adam(generator_params, lr=hp.lr * g_ratio,
                           betas=(hp.generator_beta1, 0.99**g_ratio))
        optimizer_d = adam(self.discriminator.parameters(), lr=hp.lr * d_ratio,
                           betas=(0.0, 0.99**d_ratio))
        return [optimizer_g, optimizer_d]
