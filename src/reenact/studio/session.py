"""What ``reenact studio`` does, without the web page: one loaded checkpoint, one source portrait, and the edits
and reenactments the page's controls ask for. Every edit goes through the same control API as ``reenact edit``
(:mod:`reenact.models.lpmm.control`, :mod:`reenact.models.pechead.control`), so a slider position renders the
same image as the equivalent command line.

Sliders and their *reference*: each slider starts at a reference value (the source's own parameter, or the base
pose ``p = 0`` after "reset to base pose"). A slider still at its reference (within half a step) is left to the
model, exactly as an option not given to ``reenact edit`` is; a moved slider becomes ``--set I=V`` (LPMM,
expression coefficients) or ``--yaw/--pitch/--roll V`` (PECHead). So moving LPMM slider 3 to +1.5 renders
``reenact edit --ckpt C -s SRC --set 3=1.5``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: Models whose checkpoints the studio can edit with sliders; every other model gets the video tab only.
EDITABLE = ("lpmm", "pechead")
#: Slider steps: LPMM parameters in standard deviations, PECHead angles in degrees and expression coefficients.
LPMM_STEP = 0.05
ANGLE_STEP = 0.5
EXPRESSION_STEP = 0.01


class StudioError(Exception):
    """A user-facing problem (no face found, wrong checkpoint kind, unreadable upload): shown in the page."""


@dataclass(frozen=True)
class SliderSpec:
    """One slider of the page: ``name`` is the control it sets (``p3``, ``yaw``, ``expr2``)."""

    name: str
    label: str
    minimum: float
    maximum: float
    step: float


def changed(values: Sequence[float], reference: Sequence[float], step: float) -> dict[int, float]:
    """``{index: value}`` of the sliders moved away from their reference by at least half a ``step``."""
    return {index: float(value) for index, (value, ref) in enumerate(zip(values, reference, strict=True))
            if abs(float(value) - float(ref)) >= step / 2}


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``[3, H, W]`` in [0, 1] -> ``[H, W, 3]`` uint8, rounded as ``reenact edit`` writes its PNG."""
    return (images.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)


class StudioSession:
    """A checkpoint and a source portrait; the page holds one per server (the studio is a local, one-user tool).

    Args:
        model: a model from :func:`reenact.models.load_from_checkpoint`, in eval mode.
        checkpoint: the file it came from (for messages and the page title).
        presets_path: LPMM preset library (default: the user's, as ``reenact edit``).
        face_backend, crop_increase: the face crop of ``reenact preprocess`` / ``predict --crop_source``.
    """

    def __init__(self, model: Any, checkpoint: str = "", presets_path: str | None = None,
                 face_backend: str = "dlib", crop_increase: float = 0.1) -> None:
        self.model = model.eval()
        self.checkpoint = checkpoint
        self.kind = model.registry_name
        self.presets_path = presets_path
        self.face_backend = face_backend
        self.crop_increase = crop_increase
        self.size = int(model.image_size)
        self.source: torch.Tensor | None = None  # [1, 3, size, size]
        self._source_params: torch.Tensor | None = None
        self.expression_image: torch.Tensor | None = None  # PECHead: [1, 3, size, size]

    @classmethod
    def from_checkpoint(cls, path: str, device: str = "cpu", **kwargs: Any) -> StudioSession:
        """Load ``path`` (any reenact checkpoint); a file that is not one raises :class:`StudioError`."""
        from reenact.checkpoints import CheckpointError
        from reenact.models import load_from_checkpoint

        if not Path(path).is_file():
            raise StudioError(f"{path}: no such checkpoint file")
        try:
            model = load_from_checkpoint(path)
        except CheckpointError as error:
            raise StudioError(str(error)) from None
        return cls(model.to(device), checkpoint=path, **kwargs)

    @property
    def editable(self) -> bool:
        return self.kind in EDITABLE

    def _require(self, kind: str) -> None:
        if self.kind != kind:
            raise StudioError(f"{self.checkpoint or 'this checkpoint'} holds a {self.kind!r} model; these controls "
                              f"need a {kind!r} checkpoint")
        if self.source is None:
            raise StudioError("upload or pick a source image first")

    # ------------------------------------------------------------------------------------------ images
    def prepare_image(self, image: np.ndarray | None, crop: bool = False, what: str = "source image") -> torch.Tensor:
        """An uploaded ``[H, W, 3]`` uint8 image -> ``[1, 3, size, size]`` in [0, 1], resized as ``reenact edit``
        reads its ``--source`` (optionally cropped to the face first, as ``predict --crop_source``)."""
        from reenact.data.facecrop import NoFaceError, apply_crop, find_face_crop
        from reenact.data.video import to_tensor

        if image is None:
            raise StudioError(f"no {what} given")
        array = np.asarray(image)
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=2)
        if array.ndim != 3 or array.shape[2] not in (3, 4) or min(array.shape[:2]) < 8:
            raise StudioError(f"the {what} is not an RGB picture (array of shape {tuple(array.shape)})")
        array = np.ascontiguousarray(array[..., :3]).astype(np.uint8)[None]
        if crop:
            try:
                face = find_face_crop(array, increase=self.crop_increase, backend=self.face_backend)
            except (NoFaceError, RuntimeError, KeyError) as error:
                message = error.args[0] if error.args else type(error).__name__
                raise StudioError(f"face crop of the {what}: {message}") from None
            array = apply_crop(array, face, self.size)
        return to_tensor(array, self.size).to(self._device())

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def set_source(self, image: np.ndarray | None, crop: bool = False) -> np.ndarray:
        """Use ``image`` as the portrait to edit and reenact; returns it as the model sees it (``[size, size, 3]``)."""
        self.source = self.prepare_image(image, crop)
        self._source_params = None  # LPMM's F(source), computed once per source (every slider render needs it)
        return to_uint8(self.source[0])

    # -------------------------------------------------------------------------------------------- LPMM
    def lpmm_sliders(self) -> list[SliderSpec]:
        """One slider per LP parameter, in standard deviations (index 0 is the paper's ``p_1``)."""
        count = self.model.pca.num_components
        return [SliderSpec(f"p{index}", f"p{index + 1}" if index else "p1 (largest variance)", -3.0, 3.0, LPMM_STEP)
                for index in range(count)]

    @torch.no_grad()
    def lpmm_source_values(self) -> list[float]:
        """The source's own parameters ``F(source) / sigma`` (the sliders' "reset to source")."""
        params = self._lpmm_params()[0]
        return (params / self.model.pca.std.clamp_min(1e-12)).tolist()

    @torch.no_grad()
    def _lpmm_params(self) -> torch.Tensor:
        """``F(source) [1, k]``, cached until the source changes."""
        self._require("lpmm")
        if self._source_params is None:
            self._source_params = self.model.params_from_image(self.source)
        return self._source_params

    def lpmm_base_values(self) -> list[float]:
        """The base pose ``p = 0`` (Fig. 8): every slider at zero."""
        return [0.0] * self.model.pca.num_components

    def lpmm_reference(self, base: str) -> list[float]:
        return self.lpmm_source_values() if base == "image" else self.lpmm_base_values()

    @property
    def lpmm_has_pose(self) -> bool:
        """Whether the LPMM has a fitted pose map, i.e. head-angle sliders in degrees."""
        return self.kind == "lpmm" and bool(self.model.pose_map.fitted)

    def lpmm_pose_sliders(self) -> list[SliderSpec]:
        """Yaw, pitch and roll in degrees (through the pose map), empty without one."""
        from reenact.models.lpmm.posemap import POSE_AXES

        if not self.lpmm_has_pose:
            return []
        return [SliderSpec(axis, f"{axis} (degrees)", -45.0, 45.0, ANGLE_STEP) for axis in POSE_AXES]

    @torch.no_grad()
    def lpmm_pose_reference(self, base: str = "image") -> list[float]:
        """The angles the pose map reads from the source's parameters (or from the base pose ``p = 0``)."""
        self._require("lpmm")
        if not self.lpmm_has_pose:
            return []
        params = (self._lpmm_params() if base == "image"
                  else torch.zeros(1, self.model.pca.num_components, device=self._device()))
        return self.model.pose_map.pose(params)[0].tolist()

    def lpmm_render(self, values: Sequence[float], base: str = "image", angles: Sequence[float] = ()) -> np.ndarray:
        """The source with the sliders' parameters: ``reenact edit --base BASE --set I=V`` for each moved slider,
        plus ``--yaw/--pitch/--roll V`` for each moved angle slider (LPMMs with a pose map)."""
        from reenact.models.lpmm import control
        from reenact.models.lpmm.posemap import PoseNotFittedError

        self._require("lpmm")
        if base not in ("image", "zero"):
            raise StudioError(f"base must be 'image' or 'zero', not {base!r}")
        moved = changed(values, self.lpmm_reference(base), LPMM_STEP)
        moved_angles = changed(angles, self.lpmm_pose_reference(base), ANGLE_STEP) if angles else {}
        yaw, pitch, roll = (moved_angles.get(axis) for axis in range(3))
        try:
            with torch.no_grad():
                frames = control.edit(self.model, self.source, set_values=moved, base=base, yaw=yaw, pitch=pitch,
                                      roll=roll)
        except (ValueError, PoseNotFittedError) as error:
            raise StudioError(error.args[0]) from None
        return to_uint8(frames[0])

    def lpmm_preset_names(self) -> list[str]:
        from reenact.models.lpmm import control

        return sorted(set(control.BUILTIN_PRESETS) | set(control.PresetLibrary(self.presets_path).names()))

    def lpmm_apply_preset(self, name: str, values: Sequence[float]) -> list[float]:
        """The sliders with preset ``name`` added (a user preset first, else the built-in one)."""
        from reenact.models.lpmm import control

        self._require("lpmm")
        if not name:
            raise StudioError("choose a preset to apply")
        library = control.PresetLibrary(self.presets_path)
        try:
            if name in library.names():
                library.check(name, self.model)
                offsets = library.get(name)
            else:
                offsets = control.builtin_preset_values(self.model, name)
        except (KeyError, ValueError) as error:
            raise StudioError(error.args[0]) from None
        out = list(map(float, values))
        for index, value in offsets.items():
            out[index] = min(3.0, max(-3.0, out[index] + value))
        return out

    def lpmm_save_preset(self, name: str, values: Sequence[float], base: str = "image") -> Path:
        """Save the sliders' change from their reference as preset ``name`` in the library; returns the file."""
        from reenact.models.lpmm import control

        self._require("lpmm")
        name = name.strip()
        if not name:
            raise StudioError("give the new preset a name")
        offsets = changed(values, self.lpmm_reference(base), LPMM_STEP)
        if not offsets:
            raise StudioError("no slider was moved from its reference: nothing to save")
        reference = self.lpmm_reference(base)
        delta = {index: value - reference[index] for index, value in offsets.items()}
        try:
            return control.save_preset(self.presets_path or control.default_preset_file(), name, delta, self.model)
        except (OSError, ValueError) as error:
            raise StudioError(f"could not save preset {name!r}: {error}") from None

    # ----------------------------------------------------------------------------------------- PECHead
    def pechead_sliders(self) -> tuple[list[SliderSpec], list[SliderSpec]]:
        """Yaw, pitch and roll (degrees) and one slider per expression coefficient, over the coefficient's usual
        span plus a margin (blendshapes ``[0, 1]`` ± 0.5, a learned or BFM basis ±4 standard deviations)."""
        from reenact.models.pechead.control import POSE_AXES

        pose = [SliderSpec(axis, f"{axis} (degrees)", -60.0, 60.0, ANGLE_STEP) for axis in POSE_AXES]
        reconstructor = self.model.reconstructor
        names = reconstructor.face_model.expression_names
        low, high = reconstructor.expression_range
        margin = 0.5 if reconstructor.blendshapes else 1.0
        expression = [SliderSpec(f"expr{i}", f"{i}: {name}", low - margin, high + margin, EXPRESSION_STEP)
                      for i, name in enumerate(names)]
        return pose, expression

    @torch.no_grad()
    def pechead_reference(self, relative: bool) -> tuple[list[float], list[float]]:
        """Slider references: the source's angles (absolute) or zeros (relative), and the expression of the
        expression image when one is given, else the source's."""
        self._require("pechead")
        coefficients = self.model.coefficients(self.source[:, None])
        pose = [0.0, 0.0, 0.0] if relative else coefficients["pose"][0, 0].tolist()
        if self.expression_image is not None:
            coefficients = self.model.coefficients(self.expression_image[:, None])
        return pose, coefficients["expression"][0, 0].tolist()

    def set_expression_image(self, image: np.ndarray | None, crop: bool = False) -> np.ndarray | None:
        """Take the expression from ``image`` (``None`` goes back to the source's own); returns it as seen."""
        self.expression_image = None if image is None else self.prepare_image(image, crop, "expression image")
        return None if self.expression_image is None else to_uint8(self.expression_image[0])

    def pechead_render(self, angles: Sequence[float], relative: bool, expression: Sequence[float]) -> np.ndarray:
        """The source with the sliders' pose and expression: ``reenact edit [--relative_pose] --yaw .. --set I=V
        [--expression_from IMAGE]`` for the moved sliders."""
        from reenact.models.pechead import control

        pose_reference, expression_reference = self.pechead_reference(relative)
        moved_angles = changed(angles, pose_reference, ANGLE_STEP)
        yaw, pitch, roll = (moved_angles.get(axis) for axis in range(3))
        edit = control.PoseExpressionEdit(yaw=yaw, pitch=pitch, roll=roll, relative_pose=relative,
                                          set_values=changed(expression, expression_reference, EXPRESSION_STEP))
        try:
            with torch.no_grad():
                frames = control.render(self.model, self.source, edit, self.expression_image)
        except ValueError as error:
            raise StudioError(str(error)) from None
        return to_uint8(frames[0])

    # ------------------------------------------------------------------------------------------- video
    def reenact_video(self, driving: str | Path, relative: bool = False, crop_driving: bool = False,
                      max_frames: int | None = None, out_dir: str | Path | None = None,
                      progress: Callable[[int, int], None] | None = None) -> Path:
        """Animate the source with the driving video (as ``reenact predict``) and write an mp4; returns its path.

        ``progress(done, total)`` is called after each chunk of frames.
        """
        from reenact.data.facecrop import NoFaceError, apply_crop, find_face_crop
        from reenact.data.video import VideoReadError, read_video, to_tensor, video_fps, write_video

        if self.source is None:
            raise StudioError("upload or pick a source image first")
        if not driving:
            raise StudioError("upload a driving video first")
        try:
            raw = read_video(driving, max_frames=max_frames)
        except VideoReadError as error:
            raise StudioError(f"driving video: {error}") from None
        if crop_driving:
            try:
                face = find_face_crop(raw, increase=self.crop_increase, backend=self.face_backend,
                                      detect_every=max(1, len(raw) // 16))
            except (NoFaceError, RuntimeError, KeyError) as error:
                message = error.args[0] if error.args else type(error).__name__
                raise StudioError(f"face crop of the driving video: {message}") from None
            raw = apply_crop(raw, face, self.size)
        frames = to_tensor(raw, self.size)[None].to(self._device())
        total, done = frames.shape[1], 0

        def advance(count: int) -> None:
            nonlocal done
            done += count
            if progress is not None:
                progress(done, total)

        with torch.no_grad():
            generated = self.model.generate_video(self.source[:, None], frames, relative, on_frames=advance)
        array = (generated[0].clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
        folder = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="reenact-studio-"))
        target = folder / f"reenacted_{'relative' if relative else 'absolute'}_{len(list(folder.glob('*.mp4')))}.mp4"
        try:
            fps = video_fps(driving)
        except Exception:  # a frame folder or an odd container: the default rate is fine for a preview
            fps = 25.0
        return write_video(target, array, fps=fps)
