"""Reading and writing reenact checkpoint files: ``torch.load(weights_only=True)`` only (a checkpoint is data,
never code to run), one clear line naming the file when it is not one, atomic writes.

A reenact checkpoint is a dict with ``state_dict``, ``hyper_parameters`` (the model's constructor arguments) and a
``reenact`` section naming the registered model (``{"model": "fsrt", "version": ...}``); Lightning's own
checkpoints of a reenact model have the same keys plus the training state.
:func:`reenact.registry.load_from_checkpoint` rebuilds the model from one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reenact.models.base import ReenactmentModule


class CheckpointError(ValueError):
    """A file that is not a readable reenact checkpoint; the message names the file and the reason."""


def read_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """The checkpoint dict of a reenact checkpoint, read with ``weights_only=True`` (a checkpoint is data, never
    code to run). Raises :class:`FileNotFoundError` or :class:`CheckpointError` with one clear line."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); was its writing interrupted?")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint ({reason})") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} is not a reenact checkpoint (it holds a {type(checkpoint).__name__}, "
                              "not a dict)")
    return checkpoint


def stored_hyper_parameters(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The model's constructor arguments saved in ``checkpoint`` (Lightning's private ``_*`` keys dropped)."""
    return {k: v for k, v in (checkpoint.get("hyper_parameters") or {}).items() if not k.startswith("_")}


def checkpoint_info(path: str | Path) -> tuple[str | None, dict[str, Any]]:
    """``(registry name or None, hyper-parameters)`` of a checkpoint, without building the model."""
    checkpoint = read_checkpoint(path)
    return (checkpoint.get("reenact") or {}).get("model"), stored_hyper_parameters(checkpoint)


def save_checkpoint(module: ReenactmentModule, out: str | Path, converted_from: Any = None) -> Path:
    """Write ``module`` as a reenact checkpoint (``state_dict``, ``hyper_parameters``, the ``reenact`` section
    naming the model) that :func:`load_from_checkpoint` reads; atomic, with the umask's permissions."""
    import torch

    import reenact
    from reenact.data.video import atomic_path

    info: dict[str, Any] = {"model": module.registry_name, "version": reenact.__version__}
    if converted_from is not None:
        info["converted_from"] = converted_from
    hyper_parameters = {k: v for k, v in dict(module.hparams).items() if not k.startswith("_")}
    with atomic_path(out) as temporary:
        torch.save({"state_dict": module.state_dict(), "hyper_parameters": hyper_parameters, "reenact": info},
                   temporary)
    return Path(out)

