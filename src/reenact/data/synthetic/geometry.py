"""Geometry of one synthetic frame: the weak-perspective camera, the head's 3D points and ellipsoid shading."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from reenact.data.synthetic.identity import Identity
from reenact.data.synthetic.raster import (
    _ellipse_points,
)


@dataclass
class _Camera:
    """Weak-perspective camera of one frame, mapping model units to internal-resolution pixels."""

    rotation: np.ndarray  # [3, 3]
    translation: np.ndarray  # [2] normalized
    scale: float
    size: int  # internal (supersampled) resolution

    def camera(self, points: np.ndarray) -> np.ndarray:
        """Model points ``[..., 3]`` -> pixel x, y and depth (pixels, toward the camera) ``[..., 3]``."""
        rotated = points @ self.rotation.T
        half = self.size / 2
        out = np.empty_like(rotated)
        out[..., 0] = (self.scale * rotated[..., 0] + self.translation[0] + 1) * half - 0.5
        out[..., 1] = (self.scale * rotated[..., 1] + self.translation[1] + 1) * half - 0.5
        out[..., 2] = self.scale * rotated[..., 2] * half
        return out

    def px(self, points: np.ndarray) -> np.ndarray:
        return self.camera(points)[..., :2]

    @property
    def unit(self) -> float:
        """Pixels per model unit."""
        return self.scale * self.size / 2


class _Head:
    """Auxiliary 3D geometry of one identity in model units: skull, hair, ears, neck and body."""

    def __init__(self, params: Identity, neutral: np.ndarray) -> None:
        self.params = params
        half_width = (neutral[16, 0] - neutral[0, 0]) / 2
        eye_y = neutral[[36, 39, 42, 45], 1].mean()
        chin_y = neutral[8, 1]
        self.eye_y, self.chin_y, self.half_width = eye_y, chin_y, half_width
        self.brow_y = neutral[17:27, 1].mean()
        # Skull: ~150 mm wide, ~190 mm deep, its front meets the forehead just above the nasion.
        radii = np.array([1.06 * half_width, 1.5, 1.36])
        centre = np.array([0.0, eye_y - 0.35, neutral[27, 2] + 0.06 - radii[2]])
        self.skull = (centre, radii)
        # Lower face for shading: an ellipsoid whose front passes through the cheeks and lips.
        face_radii = np.array([0.95 * half_width, (chin_y - eye_y) / 2 + 0.3, 0.95])
        face_centre = np.array([0.0, (eye_y + chin_y) / 2, neutral[48, 2] + 0.08 - face_radii[2]])
        self.face = (face_centre, face_radii)
        self.skull_samples = self._ellipsoid_samples(centre, radii, 14, 28)

        volume = params.hair_volume
        hair_radii = radii * volume + np.array([0.0, 0.0, 0.02])
        hair_centre = centre + np.array([0.0, -(volume - 1.0) * radii[1] * 0.6, -(volume - 1.0) * 0.3])
        self.hair = (hair_centre, hair_radii)
        samples = self._ellipsoid_samples(hair_centre, hair_radii, 14, 28)
        style = params.hair_style
        bottom = {"bald": -10, "short": eye_y - 0.1, "medium": eye_y + 0.55, "long": eye_y + 0.4,
                  "curly": eye_y + 0.5, "fringe": eye_y + 0.3}[style]
        keep = samples[:, 1] < bottom
        # Hair never hangs in front of the face: drop samples in front of the ear plane below the hairline.
        keep &= ~((samples[:, 2] > centre[2] + 0.25) & (samples[:, 1] > eye_y - params.hairline + 0.1))
        self.hair_samples = samples[keep]
        if style == "long":
            drop = chin_y + 1.1
            sides = []
            for x in (-1.0, 1.0):
                for y in np.linspace(eye_y, drop, 6):
                    for z in np.linspace(centre[2] - 0.9 * radii[2], centre[2] + 0.1, 4):
                        sides.append((x * hair_radii[0] * 1.02, y, z))
            self.hair_samples = np.concatenate([self.hair_samples, np.array(sides)])
        # The hair cap: a quad mesh on the hair ellipsoid from the crown down to the hairline, which is
        # highest over the forehead, lower at the temples and reaches the nape at the back.
        phi = np.radians(np.linspace(-180, 180, 33))
        hairline_y = np.minimum(eye_y - params.hairline + 0.45 * (phi / np.radians(90)) ** 2, bottom)
        top_y = hair_centre[1] - hair_radii[1] * 0.999
        rows = np.linspace(0.0, 1.0, 9)[:, None]
        y = top_y + (hairline_y[None, :] - top_y) * rows
        rho = np.sqrt(np.clip(1 - ((y - hair_centre[1]) / hair_radii[1]) ** 2, 0.0, 1.0))
        grid = np.stack([hair_centre[0] + hair_radii[0] * rho * np.sin(phi), y,
                         hair_centre[2] + hair_radii[2] * rho * np.cos(phi)], axis=-1)
        corners = [grid[:-1, :-1], grid[:-1, 1:], grid[1:, 1:], grid[1:, :-1]]
        self.hair_quads = np.stack(corners, axis=2).reshape(-1, 4, 3)
        centres = self.hair_quads.mean(axis=1)
        normals = (centres - hair_centre) / hair_radii**2
        self.hair_normals = normals / np.linalg.norm(normals, axis=1, keepdims=True)
        self.has_hair = style != "bald"

        # Ears stick out from the sides of the skull, tilted forward; their normal decides visibility.
        ears = []
        for sign in (-1.0, 1.0):
            ear_centre = np.array([sign * 1.04 * half_width, eye_y + 0.32, neutral[0, 2] - 0.18])
            height = 0.42 * params.ear_scale
            across = np.array([sign * 0.4, 0.0, -1.0])
            across = across / np.linalg.norm(across) * 0.2 * params.ear_scale
            outline = _ellipse_points(ear_centre, np.array([0.0, height, 0.0]), across, 20)
            inner = _ellipse_points(ear_centre + np.array([sign * 0.01, 0.02, 0.02]),
                                    np.array([0.0, height * 0.6, 0.0]), across * 0.55, 16)
            normal = np.cross(np.array([0.0, 1.0, 0.0]), across)
            normal = normal * np.sign(normal[0] * sign)
            ears.append((outline, inner, normal / np.linalg.norm(normal)))
        self.ears = ears

        neck_z = neutral[8, 2] - 0.72
        self.neck_top = np.array([[-0.68, chin_y - 0.45, neck_z], [0.68, chin_y - 0.45, neck_z]])
        self.neck_bottom = np.array([[0.76, chin_y + 1.2, neck_z], [-0.76, chin_y + 1.2, neck_z]])
        top = chin_y + 0.85
        self.torso = np.array([
            (-0.76, top, neck_z), (-1.3, top + 0.25, neck_z), (-2.2, top + 0.6, neck_z), (-2.7, top + 1.3, neck_z),
            (-2.9, top + 4.0, neck_z), (2.9, top + 4.0, neck_z), (2.7, top + 1.3, neck_z),
            (2.2, top + 0.6, neck_z), (1.3, top + 0.25, neck_z), (0.76, top, neck_z),
        ])
        self.collar = np.array([(-0.7, top + 0.02, neck_z + 0.2), (0.0, top + 0.75, neck_z + 0.5),
                                (0.7, top + 0.02, neck_z + 0.2)])

    @staticmethod
    def _ellipsoid_samples(centre: np.ndarray, radii: np.ndarray, rings: int, segments: int) -> np.ndarray:
        theta = np.linspace(0, math.pi, rings)[:, None]
        phi = np.linspace(0, 2 * math.pi, segments, endpoint=False)[None, :]
        height = np.broadcast_to(-np.cos(theta), (rings, segments))
        unit = np.stack([np.sin(theta) * np.sin(phi), height, np.sin(theta) * np.cos(phi)], -1)
        return centre + unit.reshape(-1, 3) * radii


def _ellipsoid_shading(
    camera: _Camera, centre: np.ndarray, radii: np.ndarray, grid: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ray-cast an ellipsoid (model units) along the view axis over pixel grids.

    Returns (hit mask ``[H, W]``, depth ``[H, W]`` in model units toward the camera, camera-space unit
    normals ``[3, H, W]``). Pixels that miss get the normal at the ray's closest approach, which
    continues the shading smoothly past the silhouette.
    """
    xs, ys = grid
    rotation = camera.rotation
    inverse_radii = 1.0 / radii
    # Camera-space ray through (x', y'): X(l) = R^T (x', y', l); in the ellipsoid's unit-sphere space
    # that is l * a + x' * bx + y' * by + b0.
    a = inverse_radii * rotation[2]
    bx = inverse_radii * rotation[0]
    by = inverse_radii * rotation[1]
    b0 = -inverse_radii * centre
    aa = a @ a
    ab = xs * (a @ bx) + ys * (a @ by) + a @ b0
    bb = (xs * xs * (bx @ bx) + ys * ys * (by @ by) + 2 * xs * ys * (bx @ by) + 2 * xs * (bx @ b0)
          + 2 * ys * (by @ b0) + b0 @ b0)
    discriminant = ab * ab - aa * (bb - 1.0)
    hit = discriminant > 0
    depth = (-ab + np.sqrt(np.maximum(discriminant, 0.0))) / aa
    # Gradient of the implicit surface, mapped to camera space: R @ diag(1/r) @ (sphere point).
    m = rotation * inverse_radii[None, :]  # R @ diag(1/r)
    normal = (depth[None] * (m @ a)[:, None, None] + xs[None] * (m @ bx)[:, None, None]
              + ys[None] * (m @ by)[:, None, None] + (m @ b0)[:, None, None])
    normal /= np.maximum(np.linalg.norm(normal, axis=0, keepdims=True), 1e-9)
    return hit, depth, normal


