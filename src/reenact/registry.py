"""Model registry, in the manner of timm: short names -> LightningModule classes and their presets.

A model registers its class under a short name (``pechead``, ``fsrt``, ``copy-source``...). Its presets
are the YAML files in ``conf/<name>/`` (``tiny.yaml`` for CPU tests, ``paper.yaml`` matching the paper):
each is a Lightning CLI config with ``model:``, ``data:`` and optionally ``trainer:`` sections, so the
same file serves ``create_model`` in a notebook and ``reenact fit --model NAME --preset P`` on the
command line.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

# Checkpoint files are read and written by :mod:`reenact.checkpoints` (below the models, so a model's converter
# can write one without importing the registry); re-exported here, where users look for them.
from reenact.checkpoints import CheckpointError as CheckpointError
from reenact.checkpoints import checkpoint_info as checkpoint_info
from reenact.checkpoints import read_checkpoint as read_checkpoint
from reenact.checkpoints import save_checkpoint as save_checkpoint
from reenact.checkpoints import stored_hyper_parameters as stored_hyper_parameters

if TYPE_CHECKING:
    from reenact.models.base import ReenactmentModule

DEFAULT_PRESET = "tiny"


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: ``target`` is ``"package.module:ClassName"``, imported only when needed."""

    name: str
    target: str
    description: str
    paper: str = ""

    def load_class(self) -> type[ReenactmentModule]:
        module_name, class_name = self.target.split(":")
        return getattr(importlib.import_module(module_name), class_name)

    def presets(self) -> list[str]:
        folder = conf_dir() / self.name
        return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, target: str, description: str, paper: str = "") -> None:
    if name in _REGISTRY and _REGISTRY[name].target != target:
        raise ValueError(f"model name {name!r} is already registered to {_REGISTRY[name].target}")
    _REGISTRY[name] = ModelEntry(name, target, description, paper)


def conf_dir() -> Path:
    """The preset folder: packaged with a wheel install, or the repository's ``conf/`` in a checkout."""
    packaged = Path(__file__).resolve().parent / "conf"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "conf"


#: The zoo's own models: (name, "module:Class", description, paper). Registered when this module is imported;
#: a model's module is imported only when its class is first needed.
BUILTIN_MODELS: tuple[tuple[str, str, str, str], ...] = (
    ("copy-source", "reenact.models.copy_source.lightning_model:CopySource",
     "Reference floor: outputs the source frame for every driving frame; nothing to train.", ""),
    ("keypoint-warp", "reenact.models.keypoint_warp.lightning_model:KeypointWarp",
     "Small FOMM-style learned reference: unsupervised keypoints, dense motion, occlusion-aware warping.",
     "Siarohin et al., First Order Motion Model, NeurIPS 2019 (without Jacobians)"),
    ("fsrt", "reenact.models.fsrt.lightning_model:FSRT",
     "Set-latent transformer: keypoints + expression vectors, pixel-wise transformer decoder, any number of sources.",
     "Rochow, Schwarz and Behnke, FSRT: Facial Scene Representation Transformer, CVPR 2024"),
    ("pechead", "reenact.models.pechead.lightning_model:PECHead",
     "Face-model landmarks + pose-aware learned keypoints, multi-scale deformable alignment, recurrent context (CAP).",
     "Gao et al., High-Fidelity and Freely Controllable Talking Head Video Generation, CVPR 2023"),
    ("lia", "reenact.models.lia.lightning_model:LIA",
     "Latent Image Animator: StyleGAN2 encoder/synthesis, orthonormal motion directions, flow-warped skip features.",
     "Wang et al., Latent Image Animator: Learning to Animate Images via Latent Space Navigation, ICLR 2022"),
    ("lpmm", "reenact.models.lpmm.lightning_model:LPMM",
     "Landmark-parameter morphable model: PCA landmark rig, LP-regressor and LP-adaptor driving a frozen LIA.",
     "Lee et al., LPMM: Intuitive Pose Control for Neural Talking-Head Model via Landmark-Parameter "
     "Morphable Model, arXiv 2305.10456, 2023"),
)
for _entry in BUILTIN_MODELS:
    register_model(*_entry)


#: Released weights per model, as timm's pretrained tags: tag -> weights entries in :mod:`reenact.weights`.
PRETRAINED: dict[str, dict[str, tuple[str, ...]]] = {
    "fsrt": {"vox256": ("fsrt-vox256", "fomm-kp-detector"), "vox256-small": ("fsrt-vox256-small", "fomm-kp-detector")},
    "lia": {"vox": ("lia-vox",)},
}
#: The function that builds each model with its released weights, ``"module:function"`` taking
#: ``(tag, resolved files)``; looked up by name (as the model classes are) so this module imports no model code.
PRETRAINED_BUILDERS: dict[str, str] = {
    "fsrt": "reenact.convert:pretrained_fsrt",
    "lia": "reenact.models.lia.official:pretrained_lia",
}


#: The preset whose architecture the released weights have.
PRETRAINED_PRESET = "paper"


def pretrained_tags(name: str) -> list[str]:
    """The released-weights tags of model ``name`` (``create_model(name, pretrained=TAG)``)."""
    return sorted(PRETRAINED.get(name, {}))


def list_models(pattern: str | None = None, *, trainable: bool | None = None,
                editing: bool | None = None, pretrained: bool | None = None) -> list[str]:
    """Names of the registered models, sorted; like ``timm.list_models``, optionally filtered.

    Args:
        pattern: shell-style wildcard on the name (``"*warp*"``, ``"l*"``); ``None``: all.
        trainable: only models that train (``True``) or that have nothing to train (``False``, copy-source).
        editing: only models that edit a still image's pose/expression (``True``: lpmm, pechead) or not.
        pretrained: only models with released weights tags (``True``: fsrt, lia; see :data:`PRETRAINED`) or not.
    """
    import fnmatch

    names = sorted(_REGISTRY)
    if pattern is not None:
        names = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
    if pretrained is not None:
        names = [name for name in names if bool(pretrained_tags(name)) == pretrained]
    if trainable is not None or editing is not None:
        classes = {name: _REGISTRY[name].load_class() for name in names}
        if trainable is not None:
            names = [name for name in names if bool(classes[name].trainable) == trainable]
        if editing is not None:
            names = [name for name in names if bool(classes[name].supports_editing) == editing]
    return names


def get_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(sorted(_REGISTRY))}") from None


def preset_path(name: str, preset: str = DEFAULT_PRESET) -> Path:
    entry = get_entry(name)
    path = conf_dir() / name / f"{preset}.yaml"
    if not path.is_file():
        available = ", ".join(entry.presets()) or "none"
        raise FileNotFoundError(f"model {name!r} has no preset {preset!r} ({path} not found); presets: {available}")
    return path


def preset_config(name: str, preset: str = DEFAULT_PRESET) -> dict[str, Any]:
    """The preset's full config (``model``, ``data``, ``trainer`` sections) as a dict."""
    with open(preset_path(name, preset)) as handle:
        return yaml.safe_load(handle) or {}


def create_model(name: str, preset: str = DEFAULT_PRESET, checkpoint_path: str | Path | None = None,
                 pretrained: str | bool = False, evaluation: Mapping[str, Any] | None = None,
                 **overrides: Any) -> ReenactmentModule:
    """Build a model from its preset's ``model:`` section, with keyword overrides on top.

    Its evaluation (:class:`reenact.evaluation.EvaluationConfig`) is the preset's ``evaluation:`` section with the
    fields of ``evaluation`` on top (e.g. ``evaluation={"metrics": ["l1", "psnr"], "relative": True}``); with a
    checkpoint or released weights, the defaults with ``evaluation`` on top.

    With ``checkpoint_path`` (timm's argument), the model is the checkpoint's instead (its stored architecture
    and weights, :func:`load_from_checkpoint`); it must hold a ``name`` model, and ``preset``/``overrides`` are
    then not allowed (the architecture is the trained one).

    With ``pretrained`` (timm's argument: a tag of :func:`pretrained_tags`, or ``True`` for the first), the
    model holds the released weights, read from the files :mod:`reenact.weights` resolves (the weights folder,
    ``$REENACT_WEIGHTS_DIR``, or the per-file variable); a missing file raises
    :class:`~reenact.weights.MissingWeightsError` naming it and where to put it. Nothing is downloaded.

    >>> model = create_model("copy-source", preset="tiny", image_size=128)
    """
    if checkpoint_path is not None and pretrained:
        raise ValueError("create_model: give checkpoint_path or pretrained, not both")
    if checkpoint_path is not None:
        if overrides:
            raise ValueError(f"create_model({name!r}, checkpoint_path=...) takes the checkpoint's architecture; "
                             f"drop the overrides {sorted(overrides)}")
        model = load_from_checkpoint(checkpoint_path)
        if model.registry_name != name:
            raise ValueError(f"{checkpoint_path} holds a {model.registry_name!r} model, not {name!r}")
        return model.configure_evaluation(evaluation)
    if pretrained:
        return _create_pretrained(name, pretrained, overrides).configure_evaluation(evaluation)
    cls = get_entry(name).load_class()
    config = preset_config(name, preset)
    arguments = dict(config.get("model") or {})
    # A Lightning CLI config may nest the arguments under init_args.
    arguments = dict(arguments.get("init_args", arguments))
    for key, value in overrides.items():
        # A nested section (e.g. FSRT's `generator`) is updated field by field, as `--model.generator.x` is.
        if isinstance(value, dict) and isinstance(arguments.get(key), dict):
            arguments[key] = {**arguments[key], **value}
        else:
            arguments[key] = value
    return cls(**arguments).configure_evaluation({**(config.get("evaluation") or {}), **(evaluation or {})})


def _create_pretrained(name: str, tag: str | bool, overrides: dict[str, Any]) -> ReenactmentModule:
    tags = pretrained_tags(name)
    if not tags:
        raise ValueError(f"{name!r} has no released weights (models with pretrained tags: "
                         f"{', '.join(list_models(pretrained=True))})")
    tag = tags[0] if tag is True else str(tag)
    if tag not in tags:
        raise ValueError(f"{name!r} has no pretrained tag {tag!r}; tags: {', '.join(tags)}")
    if overrides:
        raise ValueError(f"create_model({name!r}, pretrained={tag!r}) has the released architecture; drop the "
                         f"overrides {sorted(overrides)}")
    from reenact import weights

    files = [str(weights.resolve(entry)) for entry in PRETRAINED[name][tag]]
    module_name, _, function = PRETRAINED_BUILDERS[name].partition(":")
    return getattr(importlib.import_module(module_name), function)(tag, files)


def load_from_checkpoint(path: str | Path, map_location: str = "cpu", strict: bool = True) -> ReenactmentModule:
    """Rebuild a model from a reenact checkpoint; the model's registry name travels inside it.

    The file is read with ``weights_only=True``: a checkpoint is data, never code to run.
    """
    checkpoint = read_checkpoint(path, map_location)
    info = checkpoint.get("reenact")
    if not info or "model" not in info:
        raise CheckpointError(f"{path}: has no 'reenact' section naming its model; was it written by reenact?")
    model_class = get_entry(info["model"]).load_class()
    hparams = model_class.upgrade_hyper_parameters(stored_hyper_parameters(checkpoint))
    parameters = inspect.signature(model_class.__init__).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        # A hyper-parameter a later version removed (e.g. a training-only augmentation setting) does not stop an
        # older checkpoint from loading; its weights must still match (load_state_dict below is strict).
        dropped = sorted(set(hparams) - set(parameters))
        if dropped:
            warnings.warn(f"{path}: ignoring hyper-parameters this version of {info['model']!r} no longer has: "
                          f"{', '.join(dropped)}", stacklevel=2)
            hparams = {k: v for k, v in hparams.items() if k not in dropped}
    model = model_class(**hparams)
    model.load_state_dict(checkpoint["state_dict"], strict=strict)
    return model
