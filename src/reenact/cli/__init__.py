"""The ``reenact`` command: one entry point, one module per command family.

``reenact fit|validate|test --model NAME [--preset P]`` is Lightning's CLI (:mod:`reenact.cli.lightning`).
The other commands (:mod:`~reenact.cli.predict`, :mod:`~reenact.cli.edit`, :mod:`~reenact.cli.tools`,
``convert``, ``preprocess``, ``benchmark``, ``studio``) parse with :class:`reenact.argparsing.ArgumentParser`,
whose long options are spelled with underscores like Lightning's (dashed spellings are accepted too).
"""

from __future__ import annotations

import sys

from reenact.cli.common import console, error_console
from reenact.cli.lightning import LIGHTNING_COMMANDS, run_lightning

TOP_HELP = """\
usage: reenact COMMAND [options]

Face reenactment models under one trainer, one data pipeline and one metrics suite.

commands:
  fit        train a model:              reenact fit --model NAME [--preset tiny|paper] [--data.root ROOT]
  validate   run the validation protocol: reenact validate --model NAME --ckpt_path C
  test       evaluate (same-identity, cross-identity and, for models that edit, editing protocols;
             writes results.json/.md):
                                          reenact test --model NAME [--ckpt_path C]
  predict    animate a source image with a driving video, write a video:
             reenact predict --model NAME --ckpt C --source IMG --driving VIDEO --out OUT.mp4
  edit       edit a portrait's pose/expression (lpmm parameters and presets, pechead angles and expression),
             or sweep one parameter to a video:
             reenact edit --ckpt C --source IMG --param 3=+1.5 --expression_preset surprise --out OUT.png
             reenact edit --ckpt C --source IMG --yaw 20 --pitch 0 --roll 0 --out OUT.png
  studio     edit and reenact faces in the browser (sliders, presets, video upload; the studio extra):
             reenact studio --ckpt C [--host 127.0.0.1 --port 7860]
  benchmark  train and evaluate several models under identical conditions, write a report with tables and
             pictures: reenact benchmark --quick --out bench/  (see reenact benchmark --help)
  models     table of registered models, presets and parameter counts
  doctor     which pretrained weights, face backends and metrics are available, and how to enable the rest
  convert    released FSRT / LIA / FOMM keypoint-detector files -> reenact checkpoints:
             reenact convert fsrt --checkpoint vox256.pt --kp_detector kp_detector.pt -o fsrt_vox.ckpt
  data       dataset tools: `reenact data check ROOT`, `reenact data annotate ROOT`, `reenact data synth --out DIR`
  preprocess detect, crop, resize and annotate raw videos/images into the FOMM layout: reenact preprocess IN OUT

fit/validate/test accept Lightning CLI options: -c/--config FILE, --print_config, --trainer.*, --data.*,
--model.* (see `reenact fit --model NAME --help`). Without --data.root the embedded synthetic dataset is
built once into the cache and used.
"""


def _run_predict(args: list[str]) -> int:
    from reenact.cli.predict import run_predict

    return run_predict(args)


def _run_edit(args: list[str]) -> int:
    from reenact.cli.edit import run_edit

    return run_edit(args)


def _run_convert(args: list[str]) -> int:
    from reenact.convert import run_convert

    return run_convert(args)


def _run_preprocess(args: list[str]) -> int:
    from reenact.cli.preprocess import run_preprocess

    return run_preprocess(args)


def _run_studio(args: list[str]) -> int:
    from reenact.cli.studio import run_studio

    return run_studio(args)


def _run_benchmark(args: list[str]) -> int:
    from reenact.comparison import run_benchmark

    return run_benchmark(args)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        console.print(TOP_HELP, highlight=False, markup=False, soft_wrap=True)
        return 0
    if args[0] in ("-V", "--version"):
        import reenact

        console.print(f"reenact {reenact.__version__}")
        return 0
    command, rest = args[0], args[1:]
    if command in LIGHTNING_COMMANDS:
        return run_lightning(command, rest)
    from reenact.cli.tools import run_data, run_doctor, run_models

    handlers = {"predict": _run_predict, "edit": _run_edit, "models": run_models, "data": run_data,
                "doctor": run_doctor, "benchmark": _run_benchmark, "preprocess": _run_preprocess,
                "convert": _run_convert, "studio": _run_studio}
    if command not in handlers:
        error_console.print(f"reenact: unknown command {command!r}\n")
        console.print(TOP_HELP, highlight=False, markup=False, soft_wrap=True)
        return 2
    return handlers[command](rest)


__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
