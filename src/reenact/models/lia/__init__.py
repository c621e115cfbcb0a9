"""LIA (Latent Image Animator, Wang et al. ICLR 2022): pure-torch generator with the official layout, StyleGAN2
discriminator, losses, Lightning module and the converter for the released checkpoint."""

from reenact.models.lia.official import load_official
from reenact.models.lia.torch_model import LIAConfig, LIAGenerator, StyleGAN2Discriminator

__all__ = ["LIAConfig", "LIAGenerator", "StyleGAN2Discriminator", "load_official"]
