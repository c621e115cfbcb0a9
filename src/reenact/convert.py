"""``reenact convert``: released checkpoints (FSRT, LIA, FOMM's keypoint detector) -> reenact checkpoints.

A reenact checkpoint holds ``state_dict``, ``hyper_parameters`` and a ``reenact`` section naming the model, so
``reenact test --ckpt_path``, ``reenact predict --ckpt``, ``load_from_checkpoint`` and LPMM's
``--model.backbone_ckpt`` read it. Released files are read with ``torch.load(weights_only=True)`` by the models'
``official`` loaders, which check every key and shape (:mod:`reenact.models.fsrt.official`,
:mod:`reenact.models.lia.official`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from reenact.argparsing import ArgumentParser

#: FSRT generator fields of the released small-decoder model (``runs/vox256/vox256_small.yaml``).
FSRT_SMALL_DECODER = {"decoder_heads": 6, "decoder_mlp_dim": 768, "render_hidden": [1536, 768]}


def convert_fsrt(checkpoint: str | None, kp_detector: str | None, preset: str = "paper",
                 small_decoder: bool = False) -> Any:
    """An :class:`~reenact.models.fsrt.lightning_model.FSRT` module holding the released weights (the model file's
    encoder, decoder and expression network; the keypoint detector from ``kp_detector`` or the model file)."""
    from reenact.models import create_model
    from reenact.models.fsrt.official import load_official

    overrides: dict[str, Any] = {"generator": dict(FSRT_SMALL_DECODER)} if small_decoder else {}
    # Released weights replace the training-start initialisation, and the detector needs no pretraining stage.
    overrides.update(kp_pretrain_steps=0)
    module = create_model("fsrt", preset=preset, **overrides)
    load_official(module, checkpoint=checkpoint, kp_detector=kp_detector)
    return module


def pretrained_fsrt(tag: str, files: list[str]) -> Any:
    """``create_model("fsrt", pretrained=tag)``: the released model file and FOMM's detector (``files``) in the
    architecture of :data:`reenact.registry.PRETRAINED_PRESET`, with the small decoder for ``vox256-small``."""
    from reenact.registry import PRETRAINED_PRESET

    return convert_fsrt(files[0], files[1], preset=PRETRAINED_PRESET, small_decoder=tag == "vox256-small")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="reenact convert",
        description="Convert released checkpoints into reenact checkpoints (nothing is downloaded). "
                    "fsrt: the released model file (vox256.pt) and/or FOMM's keypoint detector (kp_detector.pt or "
                    "vox-cpk.pth.tar); lia: the released vox.pt.",
        epilog="Examples: reenact convert fsrt --checkpoint fsrt_checkpoints/vox256.pt --kp_detector "
               "fsrt_checkpoints/kp_detector.pt -o fsrt_vox.ckpt ; reenact convert lia --checkpoint vox.pt -o lia.ckpt",
    )
    parser.add_argument("model", choices=("fsrt", "lia"), help="which released model the files belong to")
    parser.add_argument("--checkpoint", help="the released model file")
    parser.add_argument("--kp_detector", help="fsrt: FOMM/FSRT keypoint detector file (kp_detector.pt or a FOMM "
                                              "checkpoint with a kp_detector entry)")
    parser.add_argument("--small_decoder", action="store_true", help="fsrt: the released small-decoder model")
    parser.add_argument("--preset", default="paper",
                        help="architecture preset the weights are loaded into (default: paper, the released sizes)")
    parser.add_argument("-o", "--out", required=True, help="reenact checkpoint to write (.ckpt)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    return parser


def run_convert(args: list[str]) -> int:
    options = build_parser().parse_args(args)
    from rich.console import Console

    from reenact.data.video import check_writable

    console = Console()
    try:
        out = check_writable(options.out, options.overwrite)
    except FileExistsError as error:
        raise SystemExit(f"reenact convert: {error}") from None
    inputs = [path for path in (options.checkpoint, options.kp_detector) if path]
    if not inputs:
        raise SystemExit("reenact convert: give --checkpoint (and for fsrt optionally --kp_detector)")
    for path in inputs:
        if not Path(path).is_file():
            raise SystemExit(f"reenact convert: {path} not found")
    if options.model == "lia" and (options.kp_detector or options.small_decoder or not options.checkpoint):
        raise SystemExit("reenact convert lia: give --checkpoint vox.pt only")
    try:
        if options.model == "fsrt":
            module = convert_fsrt(options.checkpoint, options.kp_detector, options.preset, options.small_decoder)
        else:
            from reenact.models.lia.official import lia_module_from_official

            module = lia_module_from_official(options.checkpoint)
    except (ValueError, KeyError, RuntimeError, OSError) as error:
        raise SystemExit(f"reenact convert: {error}") from None
    from reenact.checkpoints import save_checkpoint

    save_checkpoint(module, out, converted_from=inputs)
    parameters = sum(p.numel() for p in module.parameters())
    console.print(f"wrote {out}: {options.model} ({parameters / 1e6:.2f} M parameters) from {', '.join(inputs)}")
    return 0


__all__ = ["build_parser", "convert_fsrt", "pretrained_fsrt", "run_convert"]
