"""Command-line conventions shared by every ``reenact`` command that is not Lightning's CLI.

One framework everywhere: every command's parser is a :class:`jsonargparse.ArgumentParser`, the library Lightning's
CLI (``fit``/``validate``/``test``) is built on, so each command also reads its options from a config file
(``--config FILE``, YAML or JSON, overridden by what follows it on the command line) and prints its resolved
options (``--print_config``).

One flag style everywhere: long options are spelled with underscores, as Lightning's own (``--ckpt_path``,
``--trainer.max_steps``, ``--data.root``), so ``reenact predict --find_best_frame`` reads like
``reenact fit --trainer.max_steps``. The dashed spelling (``--find_best_frame``) is accepted as well, because
FOMM's and LivePortrait's users type it; ``--help`` shows only the underscore one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import jsonargparse


def normalise_flags(args: Sequence[str]) -> list[str]:
    """``--find_best_frame`` -> ``--find_best_frame`` (also in ``--max_frames=3``); short options, values and
    everything after a bare ``--`` are left alone."""
    normalised: list[str] = []
    for index, arg in enumerate(args):
        if arg == "--":
            normalised += list(args[index:])
            break
        if arg.startswith("--") and len(arg) > 2:
            name, sep, value = arg.partition("=")
            arg = "--" + name[2:].replace("-", "_") + sep + value
        normalised.append(arg)
    return normalised


class ArgumentParser(jsonargparse.ArgumentParser):
    """:class:`jsonargparse.ArgumentParser` that accepts both spellings of a long option (see the module docstring)
    and has ``--config FILE`` / ``--print_config`` (``config_file=False`` leaves them out, e.g. for the parsers of
    subcommands, whose parent has them). Declare options with underscores. Options are parsed strictly: a typo is
    an error, never ignored (jsonargparse has no ``parse_known_args``)."""

    def __init__(self, *args: Any, config_file: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if config_file:
            self.add_argument("--config", action=jsonargparse.ActionConfigFile,
                              help="read options from a YAML/JSON file (later options override it)")

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: Any = None, **kwargs: Any) -> Any:
        return super().parse_args(normalise_flags(sys.argv[1:] if args is None else args), namespace, **kwargs)


class BooleanFlag(argparse.Action):
    """``--name`` / ``--no_name`` (argparse's ``BooleanOptionalAction`` in the underscore style): sets
    ``True``/``False``; the default (often ``None``: "the model's own setting") stays when neither is given."""

    def __init__(self, option_strings: Sequence[str], dest: str, default: bool | None = None,
                 help: str | None = None) -> None:  # noqa: A002 - argparse's keyword
        strings = list(option_strings)
        strings += ["--no_" + option[2:] for option in option_strings if option.startswith("--")]
        super().__init__(strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, not (option_string or "").startswith("--no_"))

    def format_usage(self) -> str:
        return " | ".join(self.option_strings)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (so ``--max_frames 0`` is an error, not a 1-frame video)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number > 0 (frame rates, scales)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value:g}")
    return value

