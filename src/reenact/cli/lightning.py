"""``reenact fit|validate|test``: Lightning's CLI with the model chosen by its registry name and its preset as the
default config (``-c/--config``, ``--print_config``, ``--trainer.*``, ``--data.*``, ``--model.*``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from reenact.cli.common import checkpoint_info, console, pop_option

LIGHTNING_COMMANDS = ("fit", "validate", "test")


def lightning_help(command: str) -> None:
    from reenact.models import list_models

    console.print(f"usage: reenact {command} --model NAME [--preset PRESET] [Lightning CLI options]\n")
    console.print(f"registered models: {', '.join(list_models())}")
    console.print(f"Options of one model: reenact {command} --model NAME --help")


def run_lightning(command: str, args: list[str]) -> int:
    """``fit``/``validate``/``test`` through :class:`lightning.pytorch.cli.LightningCLI`."""
    # `--ckpt-path` (the dashed spelling the other commands accept) means Lightning's `--ckpt_path`.
    args = ["--ckpt_path" + a[len("--ckpt-path"):] if a.startswith("--ckpt-path") else a for a in args]
    name = pop_option(args, "--model")
    preset = pop_option(args, "--preset") or "tiny"
    untrained = "--untrained" in args
    args = [a for a in args if a != "--untrained"]
    checkpoint = pop_option(args, "--ckpt")
    if checkpoint is not None:
        args += ["--ckpt_path", checkpoint]
    else:
        checkpoint = pop_option(list(args), "--ckpt_path")
    hyper_parameters: dict[str, Any] = {}
    if checkpoint is not None and command != "fit":
        stored_name, hyper_parameters = checkpoint_info(checkpoint)
        if name is None:
            name = stored_name
        if stored_name is not None:
            from reenact.registry import get_entry

            hyper_parameters = get_entry(stored_name).load_class().upgrade_hyper_parameters(hyper_parameters)
        elif stored_name is not None and stored_name != name:
            raise SystemExit(f"reenact: {checkpoint} holds a {stored_name!r} model, not {name!r}")
    if name is None:
        if any(a in ("-h", "--help") for a in args):
            lightning_help(command)
            return 0
        raise SystemExit(f"reenact {command}: --model NAME is required (see `reenact models`)")

    from lightning.pytorch.cli import LightningCLI

    from reenact.data import ReenactDataModule
    from reenact.data.discovery import DatasetError
    from reenact.evaluation import EvaluationConfig
    from reenact.registry import get_entry, preset_path
    from reenact.training import follow_default_root_dir, trainer_defaults, without_progress_bar
    from reenact.weights import MissingWeightsError

    try:
        entry = get_entry(name)
        config_files = [str(preset_path(name, preset))]
    except (KeyError, FileNotFoundError) as error:
        raise SystemExit(f"reenact: {error.args[0]}") from None
    model_class = entry.load_class()
    if command == "fit" and not model_class.trainable:
        raise SystemExit(f"reenact: {name} has nothing to train; evaluate it with `reenact test --model {name}`")
    asks_help = any(a in ("-h", "--help", "--print_config") or a.startswith("--print_config=") for a in args)
    if (command != "fit" and model_class.trainable and checkpoint is None and not untrained and not asks_help):
        raise SystemExit(
            f"reenact {command}: {name} is a learned model and no checkpoint was given, so its weights are random. "
            f"Give --ckpt_path CKPT (e.g. runs/{name}/version_0/checkpoints/last.ckpt), or --untrained to score "
            "the initial weights on purpose (the results then say so).")
    stored_config = None
    if hyper_parameters:
        # Evaluate a checkpoint with the architecture it was trained with, not the preset's.
        import yaml

        handle, stored_config = tempfile.mkstemp(suffix=".yaml", prefix="reenact-ckpt-")
        with os.fdopen(handle, "w") as stream:
            yaml.safe_dump({"model": hyper_parameters}, stream)
        config_files.append(stored_config)

    class ReenactCLI(LightningCLI):
        def add_arguments_to_parser(self, parser: Any) -> None:
            parser.link_arguments("model.image_size", "data.image_size")
            # The job's evaluation, beside model/data/trainer rather than inside every model's arguments.
            parser.add_class_arguments(EvaluationConfig, "evaluation")

        def _parse_ckpt_path(self) -> None:
            # Lightning would apply the checkpoint's hyper-parameters over the command line, so
            # `--evaluation.relative true` would be ignored; they are a default config file here instead.
            return

        def before_instantiate_classes(self) -> None:
            config = self.config[self.subcommand]
            follow_default_root_dir(config.trainer, name)
            announce_run(command, name, preset, config, config_files[:1], checkpoint)

        def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Any:
            # `--trainer.enable_progress_bar false` must switch the default (rich) bar off, not clash with it.
            if config.get("enable_progress_bar") is False:
                self.trainer_defaults = without_progress_bar(self.trainer_defaults)
            return super()._instantiate_trainer(config, callbacks)

        def after_instantiate_classes(self) -> None:
            self.model.untrained_evaluation = untrained and checkpoint is None
            # jsonargparse instantiates the section into an EvaluationConfig with the other classes.
            self.model.configure_evaluation(self.config_init[self.subcommand].evaluation)

    import warnings

    # LightningCLI warns when it is given `args` while sys.argv holds arguments too: here they are the same
    # command. (sys.argv itself must stay: Lightning's DDP launcher re-runs it to start the other ranks.)
    warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended")
    try:
        ReenactCLI(
            model_class=model_class,
            datamodule_class=ReenactDataModule,
            subclass_mode_model=False,
            trainer_defaults=trainer_defaults(name),
            seed_everything_default=0,
            parser_kwargs={command: {"default_config_files": config_files}},
            save_config_kwargs={"overwrite": True},
            args=[command, *args],
        )
    except (DatasetError, MissingWeightsError) as error:
        # A bad dataset or a missing weights file is the user's to fix: one clear message, not a traceback.
        raise SystemExit(f"reenact {command}: {error}") from None
    finally:
        if stored_config is not None:
            Path(stored_config).unlink(missing_ok=True)
    return 0


def announce_run(command: str, name: str, preset: str, config: Any, preset_files: list[str],
                 checkpoint: str | None) -> None:
    """First lines of a fit/validate/test: what runs, from which files, on which data, writing where."""
    if int(os.environ.get("LOCAL_RANK", "0")) != 0:
        return
    data_root = config.data.get("root") if config.get("data") is not None else None
    configs = [str(path) for path in (config.get("config") or [])]
    console.print(f"[bold]reenact {command}[/bold]: model [cyan]{name}[/cyan], preset {preset} "
                  f"({', '.join(preset_files)})" + (f", config {', '.join(configs)}" if configs else ""))
    console.print(f"  data: {data_root or 'embedded synthetic dataset (built once into the cache)'}"
                  + (f" · checkpoint: {checkpoint}" if checkpoint else "")
                  + f" · output: {config.trainer.get('default_root_dir')}/")
