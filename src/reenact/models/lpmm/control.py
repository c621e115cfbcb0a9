"""Rig-like control of a trained LPMM (Lee et al. 2023, Sec. 4.4, Fig. 1 and 5-8).

Because LPMM parameters combine linearly (Eq. 1) and the LP-adaptor maps them to the backbone's pose latent,
a pose can be edited by vector arithmetic on ``p``:

* **set / offset** single parameters (the paper's interactive sliders, Fig. 5);
* **presets** ("blendshapes", e.g. ``p_surprise``): named parameter offsets saved to and loaded from JSON,
  added on top of any pose (Fig. 1, 6);
* **image-driven + parametric** (Fig. 6): the driving image gives ``p = F(I)`` (and/or ``v = E(I)``), the edit
  is added on top;
* **interpolation by scaling** (Fig. 7): ``G(D(s * p))`` for ``s`` from 0 to 1;
* **base pose** ``p = 0`` (Fig. 8): the neutral, frontal face ``G(D(0))``;
* **expression transfer** (:func:`transfer_expression`, the editing protocol of the shared evaluation): the
  source's landmarks with the expression points (brows, eyes, mouth, lower jaw) of a reference image, aligned
  to the source by a similarity transform, projected back onto the parameters. LPMM's parameters mix head pose
  and expression and carry no head angles, so an absolute head pose (frontalisation) cannot be set.

Units: control values are in **standard deviations** of each parameter over the training set
(``p_i = value * sigma_i``), so a slider range of about +-3 covers the data whatever the component's
variance; parameter indices are 0-based (index 0 is the paper's ``p_1``, the largest-variance component).

Preset files are JSON::

    {"format": "reenact-lpmm-presets", "version": 1, "unit": "std",
     "presets": {"surprise": {"params": {"3": 1.5, "7": -0.8}, "basis": "<fingerprint>", "num_params": 40}}}

``basis`` is :meth:`LandmarkPCA.fingerprint`: applying a preset made with another basis raises, because its
parameter indices would mean other motions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from reenact.data.video import atomic_path
from reenact.face.similarity import similarity_transform

if TYPE_CHECKING:
    from reenact.models.lpmm.lightning_model import LPMM

PRESET_FORMAT = "reenact-lpmm-presets"
PRESET_VERSION = 1


def default_preset_file() -> Path:
    """The user's preset library: ``$REENACT_LPMM_PRESETS``, else ``$REENACT_CACHE/lpmm_presets.json`` (the
    project's one folder, ``~/.cache/reenact`` by default; moving ``$REENACT_CACHE`` moves the presets too)."""
    explicit = os.environ.get("REENACT_LPMM_PRESETS")
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("REENACT_CACHE") or Path.home() / ".cache" / "reenact"
    return Path(cache).expanduser() / "lpmm_presets.json"


#: Built-in expression presets, defined in landmark space so that they apply to any fitted basis: each is a
#: displacement of iBUG-68 points in units of the inter-ocular distance of the basis' mean shape (``+y`` is
#: down the image). :func:`builtin_preset_values` projects the displacement onto the model's parameters
#: (``delta p = E_k delta L``, Eq. 1 is linear) and expresses it in standard deviations. What a basis cannot
#: express (e.g. a motion its training faces never made) is lost in the projection, as with any LPMM edit.
BUILTIN_PRESETS: dict[str, tuple[str, tuple[tuple[tuple[int, ...], float, float], ...]]] = {
    "surprise": ("brows raised, eyes wide, jaw dropped", (
        ((17, 18, 19, 20, 21, 22, 23, 24, 25, 26), 0.0, -0.12),
        ((37, 38, 43, 44), 0.0, -0.04),
        ((6, 7, 8, 9, 10), 0.0, 0.20),
        ((55, 56, 57, 58, 59, 65, 66, 67), 0.0, 0.22),
    )),
    "smile": ("mouth corners out and up", (
        ((48, 60), -0.10, -0.06),
        ((54, 64), 0.10, -0.06),
        ((49, 53), 0.0, -0.03),
    )),
    "open_mouth": ("jaw dropped, lips apart", (
        ((5, 6, 7, 8, 9, 10, 11), 0.0, 0.25),
        ((55, 56, 57, 58, 59, 65, 66, 67), 0.0, 0.30),
    )),
    "eyes_closed": ("upper lids down onto the lower ones", (
        ((37, 38, 43, 44), 0.0, 0.07),
    )),
    "brows_raised": ("both brows up", (
        ((17, 18, 19, 20, 21, 22, 23, 24, 25, 26), 0.0, -0.14),
    )),
}


def builtin_preset_values(model: LPMM, name: str) -> dict[int, float]:
    """Built-in preset ``name`` (:data:`BUILTIN_PRESETS`) as parameter offsets ``{index: std}`` of ``model``."""
    if name not in BUILTIN_PRESETS:
        raise KeyError(f"no built-in LPMM preset {name!r}; built-in: {', '.join(sorted(BUILTIN_PRESETS))}")
    mean = model.pca.mean.detach().to(torch.float64).cpu().unflatten(-1, (68, 2))
    interocular = float((mean[36] - mean[45]).norm())
    displacement = torch.zeros(68, 2, dtype=torch.float64)
    for points, dx, dy in BUILTIN_PRESETS[name][1]:
        displacement[list(points)] += torch.tensor([dx, dy], dtype=torch.float64) * interocular
    basis = model.pca.basis().detach().to(torch.float64).cpu()
    std = model.pca.std.detach().to(torch.float64).cpu().clamp_min(1e-12)
    values = (basis @ displacement.flatten()) / std
    return {index: float(value) for index, value in enumerate(values.tolist())}


# ------------------------------------------------------------------------------------- parameter algebra
def _check_indices(values: Mapping[int, float], num_params: int) -> None:
    for index in values:
        if not 0 <= int(index) < num_params:
            raise IndexError(f"LPMM parameter index {index} out of range 0..{num_params - 1}")


def set_params(params: Tensor, values: Mapping[int, float], std: Tensor) -> Tensor:
    """A copy of ``params [B, k]`` with ``p_i = values[i] * sigma_i`` (values in standard deviations)."""
    _check_indices(values, params.shape[-1])
    out = params.clone()
    for index, value in values.items():
        out[..., int(index)] = float(value) * std[int(index)].to(out.dtype)
    return out


def offset_params(params: Tensor, values: Mapping[int, float], std: Tensor, scale: float = 1.0) -> Tensor:
    """A copy of ``params [B, k]`` with ``p_i += scale * values[i] * sigma_i``."""
    _check_indices(values, params.shape[-1])
    out = params.clone()
    for index, value in values.items():
        out[..., int(index)] += scale * float(value) * std[int(index)].to(out.dtype)
    return out


def scale_params(params: Tensor, factor: float | Tensor) -> Tensor:
    """Interpolation between the base pose ``p = 0`` and ``params`` (Fig. 7): ``factor * p``."""
    return params * factor


def zero_params(model: LPMM, batch: int = 1) -> Tensor:
    """The base pose ``p = 0`` (Fig. 8), ``[batch, k]``."""
    return torch.zeros(batch, model.pca.num_components, device=model.pca.mean.device)


# ---------------------------------------------------------------------------------------------- presets
class PresetLibrary:
    """Named parameter presets in a JSON file (values in standard deviations, 0-based indices)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_preset_file()
        self.presets: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            self._read()

    def _read(self) -> None:
        try:
            payload = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{self.path}: not a readable preset file ({error})") from error
        if payload.get("format") != PRESET_FORMAT:
            raise ValueError(f"{self.path}: not an LPMM preset file (format {payload.get('format')!r})")
        self.presets = dict(payload.get("presets") or {})

    def names(self) -> list[str]:
        return sorted(self.presets)

    def get(self, name: str) -> dict[int, float]:
        """The offsets of preset ``name`` as ``{index: value}``."""
        if name not in self.presets:
            raise KeyError(f"no LPMM preset {name!r} in {self.path}; presets: {', '.join(self.names()) or 'none'}")
        return {int(k): float(v) for k, v in self.presets[name]["params"].items()}

    def check(self, name: str, model: LPMM) -> None:
        """Refuse a preset made for another basis (its indices would mean other motions)."""
        entry = self.presets[name]
        if entry.get("basis") not in (None, model.pca.fingerprint()):
            raise ValueError(f"preset {name!r} was made for LPMM basis {entry['basis']}, this model's is "
                             f"{model.pca.fingerprint()}")

    def add(self, name: str, values: Mapping[int, float], model: LPMM | None = None) -> None:
        """Add or replace ``name`` (in memory; :meth:`save` writes the file)."""
        if model is not None:
            _check_indices(values, model.pca.num_components)
        self.presets[name] = {
            "params": {str(int(k)): float(v) for k, v in sorted(values.items())},
            "basis": None if model is None else model.pca.fingerprint(),
            "num_params": None if model is None else model.pca.num_components,
        }

    def remove(self, name: str) -> None:
        self.presets.pop(name)

    def save(self) -> Path:
        """Write the library atomically (a crash never leaves half a file)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": PRESET_FORMAT, "version": PRESET_VERSION, "unit": "std", "presets": self.presets}
        with atomic_path(self.path) as temporary:
            Path(temporary).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        return self.path

    def apply(self, name: str, params: Tensor, model: LPMM, scale: float = 1.0) -> Tensor:
        """``params`` + ``scale`` times preset ``name`` (checked against ``model``'s basis). A name the library
        does not hold but :data:`BUILTIN_PRESETS` does is the built-in preset, projected onto ``model``'s basis;
        a user preset of the same name takes precedence."""
        if name not in self.presets and name in BUILTIN_PRESETS:
            return offset_params(params, builtin_preset_values(model, name), model.pca.std, scale)
        if name not in self.presets:
            raise KeyError(f"no LPMM preset {name!r} in {self.path} (presets: {', '.join(self.names()) or 'none'}) "
                           f"and no built-in one (built-in: {', '.join(sorted(BUILTIN_PRESETS))})")
        values = self.get(name)
        self.check(name, model)
        return offset_params(params, values, model.pca.std, scale)


def save_preset(path: str | Path, name: str, values: Mapping[int, float], model: LPMM | None = None) -> Path:
    """Add preset ``name`` to the library file ``path`` (created if needed) and write it."""
    library = PresetLibrary(path)
    library.add(name, values, model)
    return library.save()


def load_preset(path: str | Path, name: str) -> dict[int, float]:
    """The offsets of preset ``name`` in the library file ``path``."""
    return PresetLibrary(path).get(name)


# ---------------------------------------------------------------------------------------------- editing
def check_adaptor_trained(model: LPMM) -> None:
    """Refuse edits through an adaptor that never trained: its output layer starts at zero (``D(p) = v_bar`` for
    every ``p``), so every edit would silently return the same, unedited picture."""
    if not model.adaptor.trained:
        raise ValueError("this LPMM's LP-adaptor was never trained (its output layer is still zero, so every edit "
                         "renders the same picture); train it (`reenact fit --model lpmm`, stage 'adaptor', "
                         "model.adaptor_steps > 0) before editing")


def edited_latent(model: LPMM, params: Tensor, edited: Tensor, image_latent: Tensor | None = None) -> Tensor:
    """The pose latent of an edit.

    Without ``image_latent``: ``D(edited)``. With the backbone's own image latent ``v = E(I)`` (Sec. 4.4,
    "mixed with the pose encoder output"): ``v + D(edited) - D(params)``, i.e. the edit moves the image-driven
    latent by the adaptor's change, keeping whatever ``v`` captures beyond the LPMM parameters.
    """
    latent = model.latent_from_params(edited)
    if image_latent is None:
        return latent
    return image_latent + latent - model.latent_from_params(params)


def pose_target(yaw: float | None = None, pitch: float | None = None, roll: float | None = None) -> Tensor | None:
    """``[1, 3]`` head-pose target in degrees for :meth:`PoseMap.move` (``NaN`` keeps an angle); ``None`` when no
    angle is given."""
    if yaw is None and pitch is None and roll is None:
        return None
    return torch.tensor([[float("nan") if angle is None else float(angle) for angle in (yaw, pitch, roll)]])


@torch.no_grad()
def edit(model: LPMM, source: Tensor, params: dict[int, float] | None = None, preset: str | None = None, *,
         driving: Tensor | None = None, set_values: dict[int, float] | None = None, base: str = "image",
         scale: float = 1.0, use_image_latent: bool = False, presets_path: str | Path | None = None,
         yaw: float | None = None, pitch: float | None = None, roll: float | None = None,
         relative_pose: bool = False) -> Tensor:
    """Edit a portrait's pose with LPMM parameters (Sec. 4.4).

    Args:
        model: a trained :class:`~reenact.models.lpmm.lightning_model.LPMM`.
        source: the identity image, ``[3, H, W]`` or ``[B, 3, H, W]`` in ``[0, 1]``.
        params: offsets ``{index: value}`` in standard deviations, added to the pose (``--param 3=+1.5``).
        preset: a preset name in the library (``presets_path``, default :func:`default_preset_file`) or a
            built-in one (:data:`BUILTIN_PRESETS`), or the
            path of a ``.json`` library holding exactly one preset; added on top.
        driving: the pose image (default: ``source`` itself); ``[3, H, W]`` or ``[B, 3, H, W]``.
        set_values: ``{index: value}`` set absolutely (in standard deviations) before the offsets.
        base: ``"image"`` starts from ``p = F(driving)``; ``"zero"`` from the base pose ``p = 0`` (Fig. 8).
        scale: multiplies the whole result ``p`` (interpolation towards the base pose, Fig. 7).
        use_image_latent: mix with the backbone's own latent ``E(driving)`` (see :func:`edited_latent`).
        presets_path: preset library file.
        yaw, pitch, roll: head angles in degrees set (or, with ``relative_pose``, added) through the model's
            pose map (:mod:`~reenact.models.lpmm.posemap`) before the parameter edits; ``None`` keeps an angle.
            Frontalisation: all three 0.

    Returns:
        ``[B, 3, H, W]`` in ``[0, 1]``.
    """
    if base not in ("image", "zero"):
        raise ValueError(f"base must be 'image' or 'zero', got {base!r}")
    check_adaptor_trained(model)
    source = source[None] if source.dim() == 3 else source
    driving = source if driving is None else (driving[None] if driving.dim() == 3 else driving)
    was_training = model.training
    model.eval()
    try:
        image_params = model.params_from_image(driving)
        current = image_params if base == "image" else torch.zeros_like(image_params)
        target = pose_target(yaw, pitch, roll)
        if target is not None:
            current = model.pose_map.move(current, target, relative=relative_pose)
        std = model.pca.std
        if set_values:
            current = set_params(current, set_values, std)
        if preset is not None:
            preset_file = Path(preset)
            if preset_file.suffix == ".json" and preset_file.is_file():
                library = PresetLibrary(preset_file)
                if len(library.names()) != 1:
                    raise ValueError(f"{preset_file} holds {len(library.names())} presets; name one of "
                                     f"{library.names()} with presets_path={preset_file}")
                current = library.apply(library.names()[0], current, model)
            else:
                current = PresetLibrary(presets_path).apply(preset, current, model)
        if params:
            current = offset_params(current, params, std)
        current = scale_params(current, scale)
        image_latent = model.backbone.encode_pose(driving) if use_image_latent else None
        latent = edited_latent(model, image_params, current, image_latent)
        return model.render(source, latent)
    finally:
        model.train(was_training)


#: iBUG-68 points an expression moves: lower jaw (5-11, jaw drop), brows (17-26), eyes (36-47), mouth (48-67).
EXPRESSION_POINTS = (*range(5, 12), *range(17, 27), *range(36, 68))
#: Points that follow the head rather than the expression: upper face contour, nose, eye corners.
ANCHOR_POINTS = (*range(0, 5), *range(12, 17), *range(27, 36), 36, 39, 42, 45)


def mix_expression(source_points: Tensor, reference_points: Tensor) -> Tensor:
    """``source_points`` ``[B, 68, 2]`` with the :data:`EXPRESSION_POINTS` of ``reference_points`` moved onto the
    source's head by the similarity transform of the reference's :data:`ANCHOR_POINTS` onto the source's."""
    anchors = list(ANCHOR_POINTS)
    scale, rotation, translation = similarity_transform(reference_points[:, anchors], source_points[:, anchors])
    aligned = scale[:, None, None] * reference_points @ rotation.transpose(1, 2) + translation[:, None]
    mixed = source_points.clone()
    mixed[:, list(EXPRESSION_POINTS)] = aligned[:, list(EXPRESSION_POINTS)]
    return mixed


def transferred_params(model: LPMM, params_source: Tensor, params_reference: Tensor) -> Tensor:
    """The parameters of :func:`transfer_expression`: the source's Eq. 1 landmarks with the reference's
    expression points (:func:`mix_expression`), projected back onto the basis. ``[B, k]`` each -> ``[B, k]``."""
    points_source = model.pca.reconstruct(params_source).unflatten(-1, (68, 2))
    points_reference = model.pca.reconstruct(params_reference).unflatten(-1, (68, 2))
    mixed = mix_expression(points_source, points_reference)
    mixed = mixed - mixed.mean(1, keepdim=True)  # aligned landmarks have zero centroid (pca.align_landmarks)
    return model.pca.project(mixed.flatten(-2), params_source.shape[-1])


@torch.no_grad()
def set_head_pose(model: LPMM, source: Tensor, head_pose: Tensor, *, relative: bool = False,
                  expression_from: Tensor | None = None) -> Tensor:
    """``source [B, 3, H, W]`` with its head pose set to ``head_pose [B, 3]`` (yaw, pitch, roll degrees; ``NaN``
    keeps an angle; added with ``relative``) through the pose map, optionally with the expression of
    ``expression_from [B, 3, H, W]`` first (:func:`transfer_expression`). Frontalisation: ``head_pose = 0``."""
    params_source = model.params_from_image(source)
    params = (params_source if expression_from is None
              else transferred_params(model, params_source, model.params_from_image(expression_from)))
    moved = model.pose_map.move(params, head_pose.to(params), relative=relative)
    return model.render(source, edited_latent(model, params_source, moved))


@torch.no_grad()
def transfer_expression(model: LPMM, source: Tensor, reference: Tensor) -> Tensor:
    """Expression transfer: ``source [B, 3, H, W]`` with the expression of ``reference [B, 3, H, W]``, its own pose.

    ``p_s = F(source)``, ``p_r = F(reference)``; their Eq. 1 landmarks are mixed by :func:`mix_expression`,
    re-centred and projected onto the basis, ``p' = E_k (L' - L_bar)``; the result is ``G(D(p'))`` with the
    source identity. With ``reference = source`` this is exactly ``G(D(p_s))`` (``edit(model, source, {})``).
    """
    params_source = model.params_from_image(source)
    params = transferred_params(model, params_source, model.params_from_image(reference))
    return model.render(source, edited_latent(model, params_source, params))


@torch.no_grad()
def sweep(model: LPMM, source: Tensor, index: int, values: Tensor | list[float], *, base: str = "zero") -> Tensor:
    """Frames of one parameter swept over ``values`` (standard deviations) from the base pose (``base="zero"``,
    Fig. 3) or from the source's own pose (``"image"``): ``[N, 3, H, W]``, ready for a video writer."""
    frames = [edit(model, source, set_values={index: float(v)}, base=base)[0] for v in values]
    return torch.stack(frames, 0)
