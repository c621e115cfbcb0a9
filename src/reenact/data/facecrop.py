"""Face crops: the geometry of ``reenact preprocess`` (training clips) and of ``reenact predict --crop_source
--crop_driving``, and pasting the animated crop back (``--paste_back``), as LivePortrait's and FOMM's demos do.

A face box is the bounding box of the 68 landmarks raised by :data:`FOREHEAD`; the crop is a square around the
union of a clip's face boxes, enlarged by ``increase`` on each side (:func:`square_crop_box`), so a model sees
faces framed as in training. A driving video gets one box for the whole clip, as preprocessed training clips do,
so the head moves inside a fixed frame and its motion is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

#: Fraction of the landmark box height added above it so that the face box covers the forehead.
FOREHEAD = 0.25


class NoFaceError(ValueError):
    """No face was detected where one is needed (the message names the image or file)."""



def face_box(landmarks: np.ndarray) -> np.ndarray:
    """``[68, 2]`` landmarks (x, y pixels) -> face box ``[4]`` float64 ``(left, top, right, bottom)``: the
    landmark bounding box with its top raised by :data:`FOREHEAD` of its height."""
    points = np.asarray(landmarks, dtype=np.float64)
    left, top = points.min(axis=0)
    right, bottom = points.max(axis=0)
    return np.array([left, top - FOREHEAD * (bottom - top), right, bottom])


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``(left, top, right, bottom)`` boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return float(intersection / union) if union > 0 else 0.0


def square_crop_box(boxes: np.ndarray, increase: float = 0.1) -> tuple[int, int, int, int]:
    """Face boxes ``[N, 4]`` -> the integer square crop ``(left, top, right, bottom)`` (right/bottom exclusive)
    around their union, side ``(1 + 2 * increase) * max(width, height)``; it may extend outside the frame."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    left, top = boxes[:, 0].min(), boxes[:, 1].min()
    right, bottom = boxes[:, 2].max(), boxes[:, 3].max()
    side = max(2, int(round((1 + 2 * increase) * max(right - left, bottom - top))))
    x0 = int(round((left + right) / 2 - side / 2))
    y0 = int(round((top + bottom) / 2 - side / 2))
    return x0, y0, x0 + side, y0 + side


def crop_frame(frame: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """``[H, W, 3]`` uint8 -> ``[size, size, 3]`` uint8: the square ``box`` (edge-replicated where it leaves
    the frame) resized with PIL bicubic."""
    height, width = frame.shape[:2]
    left, top, right, bottom = box
    # Clipped indices replicate the edge rows/columns wherever the box leaves the frame.
    rows = np.clip(np.arange(top, bottom), 0, height - 1)
    columns = np.clip(np.arange(left, right), 0, width - 1)
    square = np.ascontiguousarray(frame[rows[:, None], columns[None, :]])
    return np.asarray(Image.fromarray(square).resize((size, size), Image.Resampling.BICUBIC))


def _detection_view(frame: np.ndarray, detect_size: int) -> tuple[np.ndarray, float]:
    """Downscale ``[H, W, 3]`` so its longest side is at most ``detect_size`` (0: never) -> (view, scale) with
    ``original = (view + 0.5) * scale - 0.5`` in the pixel-centre convention."""
    height, width = frame.shape[:2]
    longest = max(height, width)
    if detect_size <= 0 or longest <= detect_size:
        return np.ascontiguousarray(frame), 1.0
    scale = longest / detect_size
    size = (max(1, round(width / scale)), max(1, round(height / scale)))
    view = np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR))
    return view, width / size[0]


def detect_face_box(frame: np.ndarray, backend: str = "dlib", detect_size: int = 640) -> np.ndarray | None:
    """Face box ``[4]`` (see :func:`face_box`) of the largest face of ``[H, W, 3]`` uint8 RGB in its pixels,
    or ``None``; detection runs on a view downscaled to ``detect_size``."""
    from reenact.face.landmarks import get_landmark_backend

    view, scale = _detection_view(frame, detect_size)
    landmarks = get_landmark_backend(backend).detect(view)
    if landmarks is None:
        return None
    return face_box((landmarks.astype(np.float64) + 0.5) * scale - 0.5)


def crop_image(image: np.ndarray, size: int = 256, increase: float = 0.1, backend: str = "dlib",
               detect_size: int = 640) -> np.ndarray:
    """Crop one wild image like a one-frame clip: ``[H, W, 3]`` uint8 RGB -> ``[size, size, 3]`` uint8.

    Raises :class:`NoFaceError` when the landmark backend finds no face, and ``RuntimeError`` when the
    backend is unavailable here.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"crop_image expects an [H, W, 3] uint8 RGB image, got {image.shape} {image.dtype}")
    _require_backend(backend)
    box = detect_face_box(image, backend, detect_size)
    if box is None:
        raise NoFaceError(f"no face found in the {image.shape[1]}x{image.shape[0]} image ({backend} backend)")
    return crop_frame(image, square_crop_box(box[None], increase), size)



def _require_backend(backend: str) -> None:
    from reenact.face.landmarks import get_landmark_backend

    reason = get_landmark_backend(backend).unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"landmark backend {backend!r} is unavailable: {reason}")



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
