"""Load the released LIA checkpoint (wyhsirius/LIA, ``checkpoints/vox.pt``, 256 px) into our modules.

The released file is what the official ``Trainer.save`` writes: a dict ``{"gen": generator state_dict,
"dis": discriminator state_dict, "g_optim": ..., "d_optim": ..., "args": argparse.Namespace}``. The
generator is nested under the key ``"gen"`` (the official demo reads ``torch.load(path)["gen"]``); the
discriminator, when present, under ``"dis"``. Our :class:`~reenact.models.lia.torch_model.LIAGenerator` uses the
official parameter names and shapes (``official_state_dict_layouts.json``, key ``lia.generator``), so the
conversion is the identity on names: only a DDP ``module.`` prefix, if any, is stripped.

Files are read with ``torch.load(weights_only=True)``: tensors and containers only, never code. The one
non-tensor object in the official format, ``argparse.Namespace`` (``"args"``), is allow-listed for that read;
it holds plain values.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from reenact.models.lia.torch_model import LIAGenerator, StyleGAN2Discriminator

#: Key of the generator state dict in the released checkpoint.
GENERATOR_KEY = "gen"
#: Key of the discriminator state dict in the released checkpoint.
DISCRIMINATOR_KEY = "dis"
#: The official 256 px configuration (``train.py`` defaults: size 256, latent_dim_style 512,
#: latent_dim_motion 20, channel_multiplier 1).
OFFICIAL_CONFIG: dict[str, int] = {"size": 256, "style_dim": 512, "motion_dim": 20, "channel_base": 16384,
                                   "channel_max": 512}
#: Parameters of the official generator (45.12 M; encoder 22.70 M, decoder 22.42 M).
OFFICIAL_PARAMETERS = 45_116_317


def read_official(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw released checkpoint, read with ``weights_only=True`` (``argparse.Namespace`` allow-listed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LIA checkpoint {path} not found")
    with torch.serialization.safe_globals([argparse.Namespace]):
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path}: expected a dict checkpoint, got {type(checkpoint).__name__}")
    return dict(checkpoint)


def _strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    if state_dict and all(key.startswith(prefix) for key in state_dict):
        return {key[len(prefix):]: value for key, value in state_dict.items()}
    return dict(state_dict)


def generator_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The generator state dict of an official checkpoint dict: ``checkpoint["gen"]``, or the dict itself when
    it already is a bare generator state dict (keys ``enc.*``/``dec.*``)."""
    if GENERATOR_KEY in checkpoint:
        state = checkpoint[GENERATOR_KEY]
    elif checkpoint and all(str(k).removeprefix("module.").startswith(("enc.", "dec.")) for k in checkpoint):
        state = checkpoint
    else:
        raise KeyError(f"no {GENERATOR_KEY!r} entry (the generator) in the checkpoint; top-level keys: "
                       f"{sorted(map(str, checkpoint))[:10]}")
    return _strip_prefix(state)


def load_official(path: str | Path, map_location: str | torch.device = "cpu") -> LIAGenerator:
    """Build the official-size :class:`LIAGenerator` and load the released weights strictly.

    Raises ``RuntimeError`` listing missing/unexpected keys or shape mismatches if the file does not hold the
    official 256 px generator.
    """
    state = generator_state_dict(read_official(path, map_location))
    generator = LIAGenerator(**OFFICIAL_CONFIG)
    generator.load_state_dict(state, strict=True)
    return generator


def load_official_discriminator(path: str | Path, map_location: str | torch.device = "cpu"
                                ) -> StyleGAN2Discriminator:
    """The released discriminator (``"dis"``), strictly loaded into :class:`StyleGAN2Discriminator`."""
    checkpoint = read_official(path, map_location)
    if DISCRIMINATOR_KEY not in checkpoint:
        raise KeyError(f"{path}: no {DISCRIMINATOR_KEY!r} entry (the discriminator)")
    discriminator = StyleGAN2Discriminator(size=OFFICIAL_CONFIG["size"], channel_base=OFFICIAL_CONFIG["channel_base"],
                                           channel_max=OFFICIAL_CONFIG["channel_max"])
    discriminator.load_state_dict(_strip_prefix(checkpoint[DISCRIMINATOR_KEY]), strict=True)
    return discriminator


def lia_module_from_official(path: str | Path, **overrides: Any) -> torch.nn.Module:
    """A :class:`reenact.models.lia.lightning_model.LIA` at the official size carrying the released weights (generator,
    and the discriminator when the file has one), ready for ``reenact test`` or as an LPMM backbone.

    ``overrides`` go to the module (e.g. ``perceptual_weight=0`` when the VGG19 weights are absent).
    """
    from reenact.models.lia.lightning_model import LIA

    checkpoint = read_official(path)
    arguments: dict[str, Any] = {"image_size": OFFICIAL_CONFIG["size"],
                                 "generator": {k: v for k, v in OFFICIAL_CONFIG.items() if k != "size"}}
    arguments.update(overrides)
    module = LIA(**arguments)
    module.generator.load_state_dict(generator_state_dict(checkpoint), strict=True)
    if DISCRIMINATOR_KEY in checkpoint:
        module.discriminator.load_state_dict(_strip_prefix(checkpoint[DISCRIMINATOR_KEY]), strict=True)
    return module


def save_as_reenact_checkpoint(path: str | Path, out: str | Path, **overrides: Any) -> Path:
    """Convert the released file into a reenact checkpoint (``state_dict`` + ``hyper_parameters`` + the
    ``reenact`` section) that ``reenact test --ckpt_path OUT`` and ``reenact.models.load_from_checkpoint``
    read, and that LPMM accepts as ``--model.backbone_ckpt``."""
    from reenact.checkpoints import save_checkpoint

    return save_checkpoint(lia_module_from_official(path, **overrides), out, converted_from=str(path))


def pretrained_lia(tag: str, files: list[str]) -> torch.nn.Module:
    """``create_model("lia", pretrained=tag)``: the released ``vox.pt`` (``files[0]``) in a LIA module."""
    return lia_module_from_official(files[0])
