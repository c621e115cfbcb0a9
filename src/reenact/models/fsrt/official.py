"""Loading the released FSRT checkpoints (andrerochow/fsrt, config ``runs/vox256/vox256.yaml``).

The release consists of

* a model file written by the official ``Checkpoint.save``: one ``torch.save``-d dict whose entries
  ``encoder``, ``decoder`` and ``expression_encoder`` are state_dicts (plus training state such as
  ``optimizer``, ``discriminator``, ``it``, which are ignored here); the small-decoder model has the same layout
  with a smaller ``decoder``;
* ``kp_detector.pt``: the state_dict of FOMM's keypoint detector (a FOMM ``vox-cpk.pth.tar``-style dict with a
  ``kp_detector`` entry is accepted too).

:class:`~reenact.models.fsrt.torch_model.FSRTGenerator` uses the released submodule and parameter names, so every
part loads with ``load_state_dict(strict=True)``: no renaming, no missing or unexpected keys. The ``paper``
preset builds exactly the released sizes (14.15 M + 29.77 M + 15.31 M + 2.56 M parameters); for the small
decoder set the generator fields ``decoder_heads=6, decoder_mlp_dim=768, render_hidden=[1536, 768]``.

Files are read with ``torch.load(weights_only=True)``: a checkpoint is data, never code to run.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from reenact.models.fsrt.torch_model import FSRTGenerator

#: Top-level parts of a released FSRT model, in the order they are loaded.
OFFICIAL_PARTS = ("kp_detector", "expression_encoder", "encoder", "decoder")

StateSource = str | Path | Mapping[str, Any]


def _read(source: StateSource) -> Mapping[str, Any]:
    if isinstance(source, Mapping):
        return source
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"official FSRT checkpoint {path} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for unreadable / non-weights-only files
        raise ValueError(f"{path}: not readable as a weights-only checkpoint ({error})") from error


def _strip_prefix(state: Mapping[str, Any]) -> dict[str, Tensor]:
    # Checkpoints saved from a DistributedDataParallel wrapper carry a "module." prefix on every key.
    out = {}
    for key, value in state.items():
        out[key[len("module."):] if key.startswith("module.") else key] = value
    return out


def _generator(target: nn.Module) -> FSRTGenerator:
    if isinstance(target, FSRTGenerator):
        return target
    generator = getattr(target, "generator", None)
    if isinstance(generator, FSRTGenerator):
        return generator
    raise TypeError(f"expected an FSRTGenerator or an FSRT Lightning module, got {type(target).__name__}")


def official_layout(target: nn.Module) -> dict[str, dict[str, list[int]]]:
    """``{part: {key: shape}}`` of the four released parts as built by ``target`` (compare with
    ``official_state_dict_layouts.json``)."""
    generator = _generator(target)
    return {part: {k: list(v.shape) for k, v in getattr(generator, part).state_dict().items()}
            for part in OFFICIAL_PARTS}


def _load_part(module: nn.Module, part: str, state: Mapping[str, Any]) -> int:
    state = _strip_prefix(state)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or mismatched:
        lines = [f"the released {part!r} does not fit this model (build it with the `paper` preset; for the small "
                 "decoder set generator={'decoder_heads': 6, 'decoder_mlp_dim': 768, 'render_hidden': [1536, 768]}):"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if items:
                shown = ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "")
                lines.append(f"  {title}: {shown}")
        raise ValueError("\n".join(lines))
    module.load_state_dict(state, strict=True)
    return len(state)


def load_official(target: nn.Module, checkpoint: StateSource | None = None,
                  kp_detector: StateSource | None = None) -> dict[str, int]:
    """Load released FSRT weights into ``target`` (an :class:`FSRTGenerator` or the ``fsrt`` Lightning module).

    Args:
        target: the model to fill; it must have the released sizes (``paper`` preset, or the small decoder).
        checkpoint: the released model file (path) or its loaded dict, with entries ``encoder``, ``decoder`` and
            ``expression_encoder`` (and optionally ``kp_detector``); other entries are ignored.
        kp_detector: ``kp_detector.pt`` (path or state_dict, or a FOMM checkpoint dict with a ``kp_detector``
            entry).

    Returns:
        ``{part: number of tensors loaded}`` for every part that was loaded.

    Raises:
        ValueError: a part is missing from the checkpoint, or its keys/shapes differ from the model's (the
            message lists missing, unexpected and mismatched keys); nothing is half-loaded for that part.
    """
    generator = _generator(target)
    if checkpoint is None and kp_detector is None:
        raise ValueError("give the released model file (checkpoint=...) and/or kp_detector=...")
    loaded: dict[str, int] = {}
    if checkpoint is not None:
        bundle = _read(checkpoint)
        absent = [p for p in ("expression_encoder", "encoder", "decoder") if p not in bundle]
        if absent:
            raise ValueError(f"the checkpoint has no {', '.join(absent)} entry; its entries: {', '.join(bundle)}")
        for part in ("expression_encoder", "encoder", "decoder"):
            loaded[part] = _load_part(getattr(generator, part), part, bundle[part])
        if "kp_detector" in bundle and kp_detector is None:
            loaded["kp_detector"] = _load_part(generator.kp_detector, "kp_detector", bundle["kp_detector"])
    if kp_detector is not None:
        state = _read(kp_detector)
        if "kp_detector" in state and isinstance(state["kp_detector"], Mapping):
            state = state["kp_detector"]
        loaded["kp_detector"] = _load_part(generator.kp_detector, "kp_detector", state)
    return loaded


__all__ = ["OFFICIAL_PARTS", "load_official", "official_layout"]
