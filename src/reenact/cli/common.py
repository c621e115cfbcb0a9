"""What the ``reenact`` commands share: consoles, checkpoint and output checks made before any work, frame input."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

console = Console(stderr=False)
error_console = Console(stderr=True)


def pop_option(args: list[str], name: str) -> str | None:
    """Remove ``--name VALUE`` or ``--name=VALUE`` (exactly that name, not ``--name.sub``) from ``args``."""
    for index, arg in enumerate(args):
        if arg == name:
            if index + 1 >= len(args) or args[index + 1].startswith("-"):
                raise SystemExit(f"reenact: {name} needs a value")
            value = args[index + 1]
            del args[index:index + 2]
            return value
        if arg.startswith(name + "="):
            del args[index]
            return arg.split("=", 1)[1]
    return None


def checkpoint_info(path: str) -> tuple[str | None, dict[str, Any]]:
    """(registry name, hyper-parameters) stored in a reenact checkpoint; a bad file is one clear line."""
    from reenact.checkpoints import CheckpointError
    from reenact.checkpoints import checkpoint_info as read_info

    try:
        return read_info(path)
    except (FileNotFoundError, CheckpointError) as error:
        raise SystemExit(f"reenact: {error}") from None


def output_path(out: str, overwrite: bool, command: str) -> Path:
    """Refuse to overwrite ``out`` unless asked, before any work starts."""
    from reenact.data.video import check_writable

    try:
        target = check_writable(out, overwrite)
        check_writable(sidecar_path(target), overwrite)  # the JSON summary written beside it
    except FileExistsError as error:
        raise SystemExit(f"reenact {command}: {error}") from None
    # Probe the folder now (create it, write and remove a scratch file), not after all frames are generated.
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.probe"):
            pass
    except OSError as error:
        raise SystemExit(f"reenact {command}: cannot write {target}: {error.strerror or error}") from None
    return target


def sidecar_path(out: Path) -> Path:
    """``OUT.json``: the machine-readable summary ``predict``/``edit`` write beside their output."""
    return out.with_suffix(out.suffix + ".json")


def read_raw_frames(path: str | Path, command: str, max_frames: int | None = None, still: bool = False) -> Any:
    """A video, frame folder or (``still``) an image / a video's first frame -> ``[N, H, W, 3]`` uint8 as stored."""
    from reenact.data.video import IMAGE_SUFFIXES, VideoReadError, read_image, read_video

    path = Path(path)
    if not path.exists():
        raise SystemExit(f"reenact {command}: {path} not found")
    try:
        if still and path.suffix.lower() in IMAGE_SUFFIXES:
            return read_image(path)[None]
        return read_video(path, max_frames=1 if still else max_frames)
    except VideoReadError as error:
        raise SystemExit(f"reenact {command}: {error}") from None


def read_frames(path: str | Path, size: int, command: str, max_frames: int | None = None,
                still: bool = False) -> Any:
    """A video, frame folder or (``still``) an image / a video's first frame -> ``[N, 3, size, size]`` in [0, 1]."""
    from reenact.data.video import to_tensor

    return to_tensor(read_raw_frames(path, command, max_frames, still), size)
