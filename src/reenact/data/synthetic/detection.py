"""Do the renders read as faces to a real detector? dlib detection rate and landmark error."""

from __future__ import annotations

import cv2
import numpy as np

from reenact.data.synthetic.renderer import render_video
from reenact.face.dlib_backend import DlibFaceAnalyzer

# --------------------------------------------------------------------------------------------------
# Detectability


def dlib_detection_rate(frames: np.ndarray, upsample_to: int = 256) -> float:
    """Fraction of frames ``[N, H, W, 3]`` uint8 in which dlib's HOG frontal detector finds a face.

    Frames smaller than ``upsample_to`` are resized up first (bicubic), as the evaluation does.
    """
    analyzer = DlibFaceAnalyzer(upsample=1)
    found = 0
    for frame in frames:
        if frame.shape[0] < upsample_to:
            frame = cv2.resize(frame, (upsample_to, upsample_to), interpolation=cv2.INTER_CUBIC)
        found += bool(analyzer.detect(frame))
    return found / max(1, len(frames))


def measure_dlib(
    identities: int = 60, frames_per_identity: int = 10, size: int = 256, seed: int = 1000, evaluate_at: int = 256
) -> dict[str, float]:
    """Detection rate and landmark error of dlib on synthetic frames.

    Identity ``i`` contributes ``frames_per_identity`` evenly spaced frames of its clip ``i % 3``
    (32-frame clips; poses cover the whole :data:`POSE_LIMITS` range over the identities). Frames
    smaller than ``evaluate_at`` are upsampled (bicubic) first. Returns ``detection_rate``,
    ``frames``, ``landmark_error_px`` (mean distance between dlib's 68 points and the ground truth,
    pixels at ``evaluate_at``, over detected frames) and ``nme`` (the same per frame divided by the
    distance between the eye centres).
    """
    analyzer = DlibFaceAnalyzer(upsample=1)
    found, total, errors, nmes = 0, 0, [], []
    steps = np.linspace(0, 31, frames_per_identity).round().astype(int)
    for index in range(identities):
        video, truth = render_video(index, index % 3, 32, size, seed)
        for step in steps:
            image, points = video[step], truth["landmarks"][step].astype(np.float64)
            if size != evaluate_at:
                image = cv2.resize(image, (evaluate_at, evaluate_at), interpolation=cv2.INTER_CUBIC)
                points = (points + 0.5) * evaluate_at / size - 0.5
            total += 1
            result = analyzer.largest_face(image)
            if result is None:
                continue
            found += 1
            distance = np.linalg.norm(result[1] - points, axis=1).mean()
            errors.append(distance)
            nmes.append(distance / np.linalg.norm(points[36:42].mean(0) - points[42:48].mean(0)))
    return {
        "detection_rate": found / max(total, 1),
        "frames": total,
        "landmark_error_px": float(np.mean(errors)) if errors else float("nan"),
        "nme": float(np.mean(nmes)) if nmes else float("nan"),
    }
