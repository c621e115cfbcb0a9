"""The synthetic talking-head renderer: the per-frame painter (geometry in :mod:`~reenact.data.synthetic.geometry`)."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import cv2
import numpy as np
import torch

from reenact.data.synthetic.geometry import _Camera, _ellipsoid_shading, _Head
from reenact.data.synthetic.identity import Identity, face_model, sample_identity
from reenact.data.synthetic.raster import (
    _SHIFT,
    _blend,
    _bounds,
    _colour,
    _curve,
    _ellipse_points,
    _fill,
    _fix,
    _line,
    _rotation_np,
)
from reenact.data.synthetic.trajectory import sample_trajectory
from reenact.face.model3d import EXPRESSION_NAMES, to_pixels


class Renderer:
    """Paints frames of one identity. ``size`` is the output side; drawing happens at ``size * supersample``."""

    def __init__(self, params: Identity, size: int, supersample: int | None = None) -> None:
        self.params = params
        self.size = int(size)
        self.supersample = int(supersample or (2 if size >= 96 else 3))
        self.internal = self.size * self.supersample
        model = face_model()
        with torch.no_grad():
            coeffs = torch.as_tensor(params.coeffs, dtype=torch.float64)
            neutral = model.landmarks_3d(coeffs, torch.zeros(model.expression_dim, dtype=torch.float64)).numpy()
        self.head = _Head(params, neutral)
        self.background = _background(params, self.internal)
        coarse = max(16, self.internal // 4)
        centres = (np.arange(coarse) + 0.5) / coarse * 2 - 1  # normalized pixel centres of the shading grid
        self.shade_u, self.shade_v = np.meshgrid(centres, centres)

    def landmarks(self, trajectory: dict) -> tuple[np.ndarray, np.ndarray]:
        """3D landmarks ``[F, 68, 3]`` (model units) and normalized 2D landmarks ``[F, 68, 2]`` (float64)."""
        model = face_model()
        with torch.no_grad():
            points = model.landmarks_3d(
                torch.as_tensor(self.params.coeffs, dtype=torch.float64)[None],
                torch.as_tensor(trajectory["expression"], dtype=torch.float64),
            )
            projected = model.project(
                points,
                torch.as_tensor(trajectory["pose"], dtype=torch.float64),
                torch.as_tensor(trajectory["translation"], dtype=torch.float64),
                torch.as_tensor(trajectory["scale"], dtype=torch.float64),
            )
        return points.numpy(), projected.numpy()

    def render(self, trajectory: dict) -> tuple[np.ndarray, np.ndarray]:
        """Frames ``[F, size, size, 3]`` uint8 and normalized landmarks ``[F, 68, 2]`` for a trajectory."""
        points3d, landmarks = self.landmarks(trajectory)
        frames = np.empty((len(points3d), self.size, self.size, 3), dtype=np.uint8)
        for index in range(len(points3d)):
            frames[index] = self.render_frame(
                points3d[index],
                trajectory["pose"][index],
                trajectory["translation"][index],
                float(trajectory["scale"][index]),
                trajectory["expression"][index],
                trajectory["gaze"][index],
            )
        return frames, landmarks

    # ---- one frame -------------------------------------------------------------------------------

    def render_frame(
        self,
        points: np.ndarray,
        pose: np.ndarray,
        translation: np.ndarray,
        scale: float,
        expression: np.ndarray,
        gaze: np.ndarray,
    ) -> np.ndarray:
        """One frame ``[size, size, 3]`` uint8 from 3D landmarks ``[68, 3]`` and the camera."""
        params, head, size = self.params, self.head, self.internal
        pose = np.asarray(pose, dtype=np.float64)
        camera = _Camera(_rotation_np(pose), np.asarray(translation, dtype=np.float64), float(scale), size)
        body_pose = np.array([0.3 * pose[0], 0.0, 0.25 * pose[2]])
        body = _Camera(_rotation_np(body_pose), camera.translation, scale, size)
        unit = camera.unit
        canvas = self.background.copy()
        smile = float(expression[EXPRESSION_NAMES.index("smile")])
        shade = self._shading(camera)

        # Body and neck: the body follows the head's yaw and roll only partly.
        _fill(canvas, body.px(head.torso), params.clothing_colour)
        _fill(canvas, body.px(head.collar), params.skin * 0.8)
        neck = np.concatenate([camera.px(head.neck_top), body.px(head.neck_bottom)])
        _fill(canvas, neck, params.skin * 0.82)
        image = canvas.astype(np.float32)

        hair_mask = None
        if head.has_hair:  # hair behind the head, shaded like the skull it covers
            hair_mask = np.zeros((size, size), np.uint8)
            _fill(hair_mask, cv2.convexHull(camera.px(head.hair_samples).astype(np.float32))[:, 0], 255)
            hair_colour = self._hair_colour(shade)
            _blend(image, hair_mask, hair_colour)

        ears_behind, ears_front = [], []
        for outline, inner, normal in head.ears:
            (ears_front if (camera.rotation @ normal)[2] > -0.15 else ears_behind).append((outline, inner))
        for outline, inner in ears_behind:
            self._ear(image, camera, outline, inner, shade)

        # Head layer: flat albedo of skin and features; composited through the head mask afterwards.
        layer = np.empty((size, size, 3), np.uint8)
        layer[:] = np.round(params.skin).astype(np.uint8)
        mask = np.zeros((size, size), np.uint8)
        _fill(mask, cv2.convexHull(camera.px(head.skull_samples).astype(np.float32))[:, 0], 255)
        p3 = camera.camera(points)
        _fill(mask, _curve(p3[0:17, :2], samples=4), 255)
        # Occlusion/shadow map: 200 = unshaded, lower = darker, up to 255 = 27% brighter.
        ao = np.full((size, size), 200, np.uint8)
        below = points[2:15] + np.array([0.0, 0.3, -0.2])
        _fill(ao, np.concatenate([camera.px(points[2:15]), camera.px(below)[::-1]]), 135)

        features = [
            (p3[36:42, 2].mean(), "eye_right"), (p3[42:48, 2].mean(), "eye_left"),
            (p3[17:22, 2].mean(), "brow_right"), (p3[22:27, 2].mean(), "brow_left"),
            (p3[[27, 28, 29, 30, 31, 35], 2].mean(), "nose"), (p3[48:60, 2].mean(), "mouth"),
        ]
        for _, name in sorted(features):
            if name.startswith("eye"):
                self._eye(layer, ao, camera, points, name == "eye_left", gaze)
            elif name.startswith("brow"):
                self._brow(layer, camera, points, name == "brow_left")
            elif name == "nose":
                self._nose(layer, ao, camera, points, smile)
            else:
                self._mouth(layer, ao, camera, points)

        lit = layer.astype(np.float32)
        lit *= shade[..., None]
        _blend(image, mask, lit)
        for outline, inner in ears_front:
            self._ear(image, camera, outline, inner, shade)
        if hair_mask is not None:
            self._front_hair(image, camera, hair_colour)
        occlusion = cv2.GaussianBlur(ao, (0, 0), max(0.6, 0.045 * unit)).astype(np.float32)
        image *= occlusion[..., None] * (1.0 / 200.0)
        image = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return np.clip(image + 0.5, 0, 255).astype(np.uint8)

    def _shading(self, camera: _Camera) -> np.ndarray:
        """Diffuse + faint specular shading ``[S, S]`` float32 of the head surface at internal resolution.

        The head is a skull ellipsoid above the brows blended into a lower-face ellipsoid below them;
        shading varies slowly, so it is ray-cast on a 4x coarser grid and interpolated up.
        """
        head, params = self.head, self.params
        xs = (self.shade_u - camera.translation[0]) / camera.scale
        ys = (self.shade_v - camera.translation[1]) / camera.scale
        _, depth_s, normal_s = _ellipsoid_shading(camera, *head.skull, (xs, ys))
        _, depth_f, normal_f = _ellipsoid_shading(camera, *head.face, (xs, ys))
        rotation = camera.rotation
        # Model-space height of the lower-face surface point decides which surface this pixel shows.
        y_model = rotation[0, 1] * xs + rotation[1, 1] * ys + rotation[2, 1] * depth_f
        weight = np.clip((y_model - (head.brow_y - 0.2)) / 0.45, 0.0, 1.0)
        weight = weight * weight * (3 - 2 * weight)
        normal = weight * normal_f + (1 - weight) * normal_s
        normal /= np.maximum(np.linalg.norm(normal, axis=0, keepdims=True), 1e-6)
        lambert = np.tensordot(params.light, normal, axes=1)
        shade = params.ambient + (1.1 - params.ambient) * np.clip((lambert + 0.15) / 1.15, 0.0, 1.0)
        shade += np.clip(lambert, 0, 1) ** 24 * 0.08  # a faint specular sheen on forehead and cheeks
        return cv2.resize(shade.astype(np.float32), (self.internal, self.internal), interpolation=cv2.INTER_LINEAR)

    def _hair_colour(self, shade: np.ndarray) -> np.ndarray:
        """``[S, S, 3]`` float32 hair colour under the head's shading (hair is less shiny than skin)."""
        colour = self.params.hair_colour.astype(np.float32)
        return colour[None, None, :] * (0.45 + 0.55 * shade[..., None])

    def _ear(self, image: np.ndarray, camera: _Camera, outline: np.ndarray, inner: np.ndarray,
             shade: np.ndarray) -> None:
        outer2, inner2 = camera.px(outline), camera.px(inner)
        x0, y0, x1, y1 = _bounds(outer2, image.shape[:2])
        if x1 <= x0 or y1 <= y0:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        _fill(mask, outer2 - (x0, y0), 255)
        cavity = np.zeros_like(mask)
        _fill(cavity, inner2 - (x0, y0), 255)
        tone = (0.95 - 0.3 * cavity.astype(np.float32) / 255.0) * shade[y0:y1, x0:x1]
        colour = self.params.skin.astype(np.float32)[None, None, :] * tone[..., None]
        _blend(image[y0:y1, x0:x1], mask, colour)

    # ---- features ------------------------------------------------------------------------------

    def _eye(self, layer: np.ndarray, ao: np.ndarray, camera: _Camera, points: np.ndarray, left: bool,
             gaze: np.ndarray) -> None:
        """Socket shadow, lid crease, sclera with iris and pupil (when open) and the lash line."""
        order = [42, 43, 44, 45, 46, 47] if left else [36, 37, 38, 39, 40, 41]
        eye3 = points[order]
        eye2 = camera.px(eye3)
        centre3 = eye3.mean(axis=0)
        width3 = np.linalg.norm(points[45 if left else 36] - points[42 if left else 39])
        unit = camera.unit
        # Socket shadow between brow and eye and the lid crease keep the eye region dark, as in photos.
        socket = _ellipse_points(centre3 + np.array([0.0, -0.05, 0.02]), np.array([0.8 * width3, 0, 0]),
                                 np.array([0.0, 0.17, 0.0]), 24)
        _fill(ao, camera.px(socket), 168)
        crease3 = eye3[:4] + np.array([0.0, -0.06, 0.01])
        crease3[[0, 3]] += np.array([0.0, 0.03, 0.0])
        _line(ao, _curve(camera.px(crease3)), 130, max(1.0, 0.02 * unit))
        contour = _curve(eye2, closed=True, samples=5)
        upper = _curve(eye2[[0, 1, 2, 3]])
        opening = (np.linalg.norm(eye2[1] - eye2[5]) + np.linalg.norm(eye2[2] - eye2[4])) / 2
        width = np.linalg.norm(eye2[0] - eye2[3])
        if opening > 0.12 * width and width > 1:
            _fill(layer, contour, (238, 232, 226))
            x0, y0, x1, y1 = _bounds(contour, layer.shape[:2])
            if x1 > x0 and y1 > y0:
                roi = layer[y0:y1, x0:x1]
                patch = roi.copy()
                clip = np.zeros(roi.shape[:2], np.uint8)
                _fill(clip, contour - (x0, y0), 255)
                offset = np.array([0.22 * gaze[0], 0.12 * gaze[1]]) * width3
                iris_centre = camera.px(centre3 + np.array([offset[0], offset[1] - 0.005, 0.01]))
                radius = 0.23 * width3 * unit
                # The iris narrows as the head turns; softened (sqrt) because the eyeball turns too.
                narrowing = abs(camera.rotation[0, 0]) ** 0.5
                axes = (max(1, int(radius * narrowing * 16)), max(1, int(radius * 16)))
                angle = math.degrees(math.atan2(camera.rotation[1, 0], camera.rotation[0, 0]))
                centre_fixed = tuple(int(v) for v in _fix(iris_centre - (x0, y0)))
                cv2.ellipse(patch, centre_fixed, axes, angle, 0, 360, _colour(self.params.iris_colour),
                            -1, cv2.LINE_AA, _SHIFT)
                pupil_axes = (max(1, int(axes[0] * 0.45)), max(1, int(axes[1] * 0.45)))
                cv2.ellipse(patch, centre_fixed, pupil_axes, angle, 0, 360, (12, 10, 10), -1, cv2.LINE_AA, _SHIFT)
                glint = iris_centre - (x0, y0) + np.array([0.3 * radius, -0.35 * radius])
                cv2.circle(patch, tuple(int(v) for v in _fix(glint)), max(1, int(radius * 0.18 * 16)),
                           (250, 250, 250), -1, cv2.LINE_AA, _SHIFT)
                weight = clip.astype(np.float32)[..., None] / 255.0
                roi[:] = (patch * weight + roi * (1 - weight)).astype(np.uint8)
            _line(layer, _curve(eye2[[3, 4, 5, 0]]), self.params.skin * 0.55, max(1.0, 0.012 * unit))
        lash = self.params.brow_colour * 0.5
        _line(layer, upper, lash, max(1.0, 0.03 * unit))

    def _brow(self, layer: np.ndarray, camera: _Camera, points: np.ndarray, left: bool) -> None:
        """A tapered brow whose upper edge runs through the landmarks, as in the iBUG annotation."""
        order = [26, 25, 24, 23, 22] if left else [17, 18, 19, 20, 21]  # outer to inner
        top3 = points[order]
        thickness = self.params.brow_thickness * np.array([0.45, 0.7, 0.85, 0.95, 1.0])
        bottom3 = top3 + np.stack([np.zeros(5), thickness, np.full(5, 0.01)], axis=1)
        bottom3[-1, 1] += 0.01
        top = _curve(camera.px(top3), samples=4)
        bottom = _curve(camera.px(bottom3), samples=4)
        _fill(layer, np.concatenate([top, bottom[::-1]]), self.params.brow_colour)

    def _nose(self, layer: np.ndarray, ao: np.ndarray, camera: _Camera, points: np.ndarray, smile: float) -> None:
        """A faceted nose (bridge sides, tip, underside, wings), nostrils and the shadows around it."""
        light = self.params.light
        ridge = points[27:31]
        half = np.array([0.085, 0.09, 0.1, 0.0])
        back = np.array([0.04, 0.08, 0.14, 0.0])
        left_side = ridge[:3] + np.stack([-half[:3], np.zeros(3), -back[:3]], 1)
        right_side = ridge[:3] + np.stack([half[:3], np.zeros(3), -back[:3]], 1)
        wing_l = points[31] + np.array([-0.05, -0.045, 0.0])
        wing_r = points[35] + np.array([0.05, -0.045, 0.0])
        tip, base_l, base_c, base_r = points[30], points[32], points[33], points[34]
        faces = [
            (ridge[0], ridge[1], left_side[1], left_side[0]),
            (ridge[1], ridge[2], left_side[2], left_side[1]),
            (ridge[2], tip, wing_l, left_side[2]),
            (ridge[0], right_side[0], right_side[1], ridge[1]),
            (ridge[1], right_side[1], right_side[2], ridge[2]),
            (ridge[2], right_side[2], wing_r, tip),
            (tip, base_c, base_l, wing_l),
            (tip, wing_r, base_r, base_c),
            (wing_l, base_l, points[31], wing_l + np.array([-0.03, 0.05, -0.04])),
            (wing_r, wing_r + np.array([0.03, 0.05, -0.04]), points[35], base_r),
        ]
        # Each facet is painted in skin colour (so the nose hides whatever lies behind it, e.g. the far
        # eye's inner corner when the head turns) and darkens or brightens the occlusion map by its Lambert
        # term relative to that of the face plane it stands on, which the ellipsoid shading already gives.
        inside = np.array([0.0, ridge[2, 1], ridge[2, 2] - 0.6])
        forward = camera.rotation[:, 2]
        base_shade = max(0.2, float(light @ forward))
        drawn = []
        for quad in faces:
            quad = np.array(quad)
            normal = np.cross(quad[1] - quad[0], quad[2] - quad[0]) + np.cross(quad[2] - quad[0], quad[3] - quad[0])
            normal /= max(np.linalg.norm(normal), 1e-9)
            if normal @ (quad.mean(0) - inside) < 0:
                normal = -normal
            normal_camera = camera.rotation @ normal
            if normal_camera[2] <= 0:
                continue
            shade = max(0.0, float(light @ normal_camera)) / base_shade
            drawn.append((float(camera.camera(quad)[:, 2].mean()), quad, shade))
        for _, quad, shade in sorted(drawn, key=lambda item: item[0]):
            polygon = camera.px(quad)
            _fill(layer, polygon, self.params.skin)
            _fill(ao, polygon, int(np.clip(200 * (0.35 + 0.65 * shade), 110, 240)))
        # Nostrils lie in the nose's underside, which faces down and forward: slits that widen as the
        # face looks up.
        underside = np.array([0.0, -0.5, 1.0]) / math.hypot(0.5, 1.0)
        for a, b in ((31, 32), (35, 34)):
            centre = 0.45 * points[a] + 0.55 * points[b] + np.array([0.0, -0.012, 0.0])
            nostril = _ellipse_points(centre, np.array([0.055, 0.0, 0.0]), underside * 0.045, 16)
            _fill(layer, camera.px(nostril), self.params.skin * 0.3)
        # Nasolabial folds deepen with a smile.
        for wing, corner, sign in ((31, 48, -1.0), (35, 54, 1.0)):
            fold3 = np.array([
                points[wing] + np.array([sign * 0.06, 0.0, -0.03]),
                0.5 * (points[wing] + points[corner]) + np.array([sign * 0.09, 0.0, -0.04]),
                points[corner] + np.array([sign * 0.06, 0.08, -0.03]),
            ])
            _line(ao, _curve(camera.px(fold3)), int(178 - 40 * smile), max(1.0, 0.025 * camera.unit))
        under = _ellipse_points(points[33] + np.array([0.0, 0.07, -0.02]), np.array([0.12, 0, 0]),
                                np.array([0, 0.05, 0]), 16)
        _fill(ao, camera.px(under), 170)

    def _mouth(self, layer: np.ndarray, ao: np.ndarray, camera: _Camera, points: np.ndarray) -> None:
        """Lips, the dark mouth interior with upper teeth when open, the lip line and chin/corner shadows."""
        p = camera.px(points)
        lip = self.params.lip_colour
        upper_outer = _curve(p[48:55], samples=4)
        lower_outer = _curve(p[[54, 55, 56, 57, 58, 59, 48]], samples=4)
        inner_upper = _curve(p[60:65], samples=4)
        inner_lower = _curve(p[[64, 65, 66, 67, 60]], samples=4)
        unit = camera.unit
        chin = _ellipse_points(0.55 * points[57] + 0.45 * points[8] + np.array([0, -0.02, 0.0]),
                               np.array([0.2, 0, 0]), np.array([0, 0.07, 0]), 16)
        _fill(ao, camera.px(chin), 178)
        _fill(layer, np.concatenate([upper_outer, inner_upper[::-1]]), lip * 0.86)  # faces down: darker
        _fill(layer, np.concatenate([lower_outer, inner_lower[::-1]]), lip)
        interior = np.concatenate([inner_upper, inner_lower[1:-1]])
        gap = np.linalg.norm(p[62] - p[66])
        if gap > 0.02 * unit:
            _fill(layer, interior, (55, 18, 24))
            x0, y0, x1, y1 = _bounds(interior, layer.shape[:2])
            if x1 > x0 and y1 > y0:
                roi = layer[y0:y1, x0:x1]
                patch = roi.copy()
                teeth3 = points[[60, 61, 62, 63, 64]]
                lower_edge = teeth3 + np.array([0.0, 0.075, -0.02])
                teeth = np.concatenate([_curve(camera.px(teeth3)), _curve(camera.px(lower_edge))[::-1]])
                _fill(patch, teeth - (x0, y0), (228, 222, 210))
                clip = np.zeros(roi.shape[:2], np.uint8)
                _fill(clip, interior - (x0, y0), 255)
                weight = clip.astype(np.float32)[..., None] / 255.0
                roi[:] = (patch * weight + roi * (1 - weight)).astype(np.uint8)
        _line(layer, inner_upper, lip * 0.45, max(1.0, 0.025 * unit))
        for corner in (48, 54):
            _fill(ao, camera.px(_ellipse_points(points[corner], np.array([0.03, 0, 0]),
                                                 np.array([0, 0.03, 0]), 10)), 150)

    def _front_hair(self, image: np.ndarray, camera: _Camera, colour: np.ndarray) -> None:
        """The front-facing part of the hair cap mesh, painted over the skull and forehead."""
        visible = (self.head.hair_normals @ camera.rotation.T)[:, 2] > -0.02
        quads = camera.px(self.head.hair_quads[visible])
        if not len(quads):
            return
        mask = np.zeros(image.shape[:2], np.uint8)
        # One aliased fill of the whole tiling: anti-aliased edges between adjacent quads would leave
        # seams. The mask is softened below and the frame is area-downsampled afterwards.
        cv2.fillPoly(mask, list(_fix(quads)), 255, cv2.LINE_8, _SHIFT)
        x0, y0, x1, y1 = _bounds(quads.reshape(-1, 2), mask.shape, margin=4)
        if x1 > x0 and y1 > y0:
            mask[y0:y1, x0:x1] = cv2.GaussianBlur(mask[y0:y1, x0:x1], (0, 0), 0.7)
        _blend(image, mask, colour)


def _background(params: Identity, size: int) -> np.ndarray:
    """A static ``[size, size, 3]`` uint8 background: two-colour gradient plus an optional pattern."""
    rng = np.random.default_rng(params.background_seed)
    coords = (np.arange(size) + 0.5) / size * 2 - 1
    u, v = np.meshgrid(coords, coords)
    direction = np.array([math.cos(params.background_angle), math.sin(params.background_angle)])
    mix = np.clip((u * direction[0] + v * direction[1]) * 0.5 + 0.5, 0, 1)[..., None]
    first, second = params.background_colours
    image = first * (1 - mix) + second * mix
    if params.background == "stripes":
        period = rng.uniform(0.15, 0.5)
        angle = rng.uniform(0, math.pi)
        phase = (u * math.cos(angle) + v * math.sin(angle)) / period
        image *= (1 + 0.08 * np.sign(np.sin(2 * math.pi * phase)))[..., None]
    elif params.background == "blobs":
        layer = np.zeros((size, size), np.float64)
        for _ in range(rng.integers(4, 9)):
            centre = rng.uniform(-1, 1, 2)
            radius = rng.uniform(0.1, 0.35)
            layer += rng.uniform(-1, 1) * np.exp(-((u - centre[0]) ** 2 + (v - centre[1]) ** 2) / radius**2)
        image *= (1 + 0.15 * np.tanh(layer))[..., None]
    elif params.background == "checks":
        period = rng.uniform(0.25, 0.6)
        cells = (np.floor(u / period) + np.floor(v / period)) % 2
        image *= (1 + 0.06 * (cells * 2 - 1))[..., None]
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# Public API


def render_video(
    identity: int | Identity,
    clip: int = 0,
    frames: int = 32,
    size: int = 128,
    seed: int = 0,
    fps: float = 25.0,
    supersample: int | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Render one clip without writing files.

    Args:
        identity: an identity index of the population of ``seed``, or an :class:`Identity`
            (its ``index`` then selects the trajectories).
        clip: clip index; each (identity, clip) pair has its own trajectory.
        frames: number of frames F.
        size: frame side in pixels.
        seed: population and trajectory seed.
        fps: frame rate the trajectories are timed for.
        supersample: drawing resolution multiple (default 2 from 96 px up, else 3).

    Returns:
        frames ``[F, size, size, 3]`` uint8 RGB, and the ground truth with the arrays of an annotation
        file: ``landmarks`` [F, 68, 2] pixels, ``pose`` [F, 3], ``translation`` [F, 2], ``scale`` [F],
        ``expression`` [F, E], ``identity_coeffs`` [I] (all float32) and ``identity`` (0-d str array).
    """
    person = identity if isinstance(identity, Identity) else sample_identity(seed, int(identity))
    trajectory = sample_trajectory(seed, person.index, clip, frames, fps)
    video, landmarks = Renderer(person, size, supersample).render(trajectory)
    truth = {
        "landmarks": to_pixels(landmarks, size).astype(np.float32),
        **{key: trajectory[key] for key in ("pose", "translation", "scale", "expression")},
        "identity_coeffs": person.coeffs.astype(np.float32),
        "identity": np.array(person.name),
    }
    return video, truth


def identity_dict(identity: Identity) -> dict[str, Any]:
    """JSON-friendly view of an identity (for reports and debugging)."""
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(identity).items()}


