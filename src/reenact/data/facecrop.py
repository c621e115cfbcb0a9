"""Face crops for inference, and pasting the animated crop back (what ``reenact predict --crop_source
--crop_driving --paste_back`` does, as LivePortrait's and FOMM's demos do).

The crop is the one ``reenact preprocess`` makes (:func:`reenact.data.preprocess.square_crop_box`: a square
around the face box, enlarged by ``increase`` on each side), so a model sees faces framed as in training. A
driving video gets one box for the whole clip (around the union of its faces), as preprocessed training clips
do, so the head moves inside a fixed frame and its motion is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from reenact.data.preprocess import NoFaceError, crop_frame, detect_face_box, square_crop_box


@dataclass(frozen=True)
class FaceCrop:
    """A square crop ``box = (left, top, right, bottom)`` (pixels, right/bottom exclusive, possibly outside the
    frame) of an image or clip of ``frame_size = (height, width)``."""

    box: tuple[int, int, int, int]
    frame_size: tuple[int, int]

    @property
    def side(self) -> int:
        return self.box[2] - self.box[0]


def find_face_crop(frames: np.ndarray, increase: float = 0.1, backend: str = "dlib", detect_every: int = 1,
                   detect_size: int = 640) -> FaceCrop:
    """One crop for ``frames [T, H, W, 3]`` uint8 (an image is ``T = 1``) around the union of the faces found in
    every ``detect_every``-th frame.

    Raises:
        NoFaceError: no face in any inspected frame.
    """
    boxes = [box for frame in frames[::max(1, detect_every)]
             if (box := detect_face_box(frame, backend, detect_size)) is not None]
    if not boxes:
        raise NoFaceError(f"no face found in {len(frames[::max(1, detect_every)])} inspected frame(s) "
                          f"({backend} backend)")
    return FaceCrop(square_crop_box(np.stack(boxes), increase), tuple(frames.shape[1:3]))


def apply_crop(frames: np.ndarray, crop: FaceCrop, size: int) -> np.ndarray:
    """``[T, H, W, 3]`` uint8 -> ``[T, size, size, 3]`` uint8 (edge-replicated outside the frame)."""
    return np.stack([crop_frame(frame, crop.box, size) for frame in frames])


def feather_mask(side: int, feather: float = 0.1) -> np.ndarray:
    """``[side, side]`` float32 blending weight: 1 inside, falling linearly to 0 over the outer ``feather`` of
    the side, so the pasted crop has no visible seam."""
    ramp = max(1, int(round(feather * side)))
    distance = np.minimum(np.arange(side), np.arange(side)[::-1]).astype(np.float32)
    edge = np.clip((distance + 0.5) / ramp, 0, 1)
    return np.minimum(edge[:, None], edge[None, :])


def paste_back(original: np.ndarray, generated: np.ndarray, crop: FaceCrop, feather: float = 0.1) -> np.ndarray:
    """The animated crops ``generated [T, s, s, 3]`` uint8 blended into ``original [H, W, 3]`` uint8 at
    ``crop`` -> ``[T, H, W, 3]`` uint8 at the original resolution (outside the crop: the original pixels)."""
    height, width = original.shape[:2]
    if (height, width) != tuple(crop.frame_size):
        raise ValueError(f"the crop was found in a {crop.frame_size[1]}x{crop.frame_size[0]} image, "
                         f"not this {width}x{height} one")
    left, top, right, bottom = crop.box
    side = crop.side
    # The part of the box inside the frame, in frame and in crop coordinates.
    x0, y0, x1, y1 = max(left, 0), max(top, 0), min(right, width), min(bottom, height)
    if x0 >= x1 or y0 >= y1:
        raise ValueError(f"crop box {crop.box} lies outside the {width}x{height} image")
    weight = feather_mask(side, feather)[y0 - top:y1 - top, x0 - left:x1 - left, None]
    out = np.repeat(original[None], len(generated), axis=0)
    base = original[y0:y1, x0:x1].astype(np.float32)
    for index, frame in enumerate(generated):
        resized = np.asarray(Image.fromarray(frame).resize((side, side), Image.Resampling.BICUBIC), np.float32)
        patch = resized[y0 - top:y1 - top, x0 - left:x1 - left]
        out[index, y0:y1, x0:x1] = np.clip(weight * patch + (1 - weight) * base + 0.5, 0, 255).astype(np.uint8)
    return out
