"""FSRT (paper 003): encodings, expression network, shapes, chunked decoding, multi-source, regularisation, the
training phases, checkpoints, the released-checkpoint layout and parameter counts, and a 2-process DDP fit.

Everything runs on the CPU. Training data are drawn faces with exact 68-point landmarks (built here, so the tests
do not depend on another dataset generator).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn

import reenact.models
from reenact.models.fsrt import FSRTGenerator, best_initial_frame, load_official, official_layout, pixel_grid
from reenact.models.fsrt.augment import (
    color_jitter,
    crop_boxes,
    crop_frames,
    crop_points,
    face_boxes,
    jitter_parameters,
    out_of_frame_boxes,
)
from reenact.models.fsrt.losses import (
    IBUG68_TO_KEYPOINTS,
    covariance_loss,
    invariance_loss,
    landmarks_to_keypoints,
    random_pixel_indices,
    regularisation_loss,
    strided_pixel_indices,
    variance_loss,
)
from reenact.models.fsrt.torch_model import ExpressionEncoder, FSRTDecoder
from reenact.nn.encoding import PositionalEncoding
from reenact.nn.losses import VGG19Perceptual

LAYOUTS = Path(__file__).resolve().parent / "data" / "official_state_dict_layouts.json"
# Parameter counts of the released model (reference README: 14.15 M, 29.77 M, 15.31 M, 2.56 M).
PAPER_COUNTS = {"kp_detector": 14_146_728, "encoder": 29_774_112, "decoder": 15_310_131,
                "expression_encoder": 2_558_976}


# ----------------------------------------------------------------------------------------------- test data
def _face_template() -> np.ndarray:
    """68 iBUG-ordered points of a cartoon face in a unit frame (x right, y down, centre at 0)."""
    pts = np.zeros((68, 2))
    t = np.linspace(np.pi * 0.95, np.pi * 0.05, 17)
    pts[0:17] = np.stack([-0.8 * np.cos(t), 0.3 + 0.7 * np.sin(t)], 1)  # jaw
    pts[17:22] = np.stack([np.linspace(-0.6, -0.15, 5), np.full(5, -0.45)], 1)  # brows
    pts[22:27] = np.stack([np.linspace(0.15, 0.6, 5), np.full(5, -0.45)], 1)
    pts[27:31] = np.stack([np.zeros(4), np.linspace(-0.3, 0.1, 4)], 1)  # nose
    pts[31:36] = np.stack([np.linspace(-0.15, 0.15, 5), np.full(5, 0.15)], 1)
    for start, cx in ((36, -0.35), (42, 0.35)):  # eyes
        a = np.linspace(0, 2 * np.pi, 7)[:-1]
        pts[start:start + 6] = np.stack([cx + 0.12 * np.cos(a), -0.25 + 0.05 * np.sin(a)], 1)
    a = np.linspace(np.pi, -np.pi, 13)[:-1]  # lips
    pts[48:60] = np.stack([0.3 * np.cos(a), 0.45 + 0.08 * np.sin(a)], 1)
    a = np.linspace(np.pi, -np.pi, 9)[:-1]
    pts[60:68] = np.stack([0.2 * np.cos(a), 0.45 + 0.04 * np.sin(a)], 1)
    return pts


def render_face(size: int, centre: np.ndarray, scale: float, mouth: float, face_rgb: np.ndarray,
                background_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A drawn face ``[size, size, 3]`` uint8 with its 68 landmarks ``[68, 2]`` in pixels; ``mouth`` opens it."""
    pts = _face_template()
    pts[48:68, 1] = 0.45 + (pts[48:68, 1] - 0.45) * (1 + 3 * mouth)
    landmarks = np.asarray(centre) + pts * scale
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    image = np.empty((size, size, 3))
    image[:] = background_rgb
    image[((xx - centre[0]) / (0.85 * scale)) ** 2 + ((yy - centre[1] - 0.1 * scale) / scale) ** 2 < 1] = face_rgb
    for group in (range(36, 42), range(42, 48)):
        c = landmarks[list(group)].mean(0)
        image[(xx - c[0]) ** 2 + (yy - c[1]) ** 2 < (0.1 * scale) ** 2] = (0.1, 0.1, 0.2)
    mc = landmarks[60:68].mean(0)
    image[((xx - mc[0]) / (0.25 * scale)) ** 2 + ((yy - mc[1]) / ((0.04 + 0.12 * mouth) * scale)) ** 2 < 1] = (
        0.5, 0.1, 0.1)
    return (image * 255).round().astype(np.uint8), landmarks.astype(np.float32)


def _clip(identity: int, clip: int, frames: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    colours = np.random.default_rng(identity)
    face_rgb, background_rgb = colours.uniform(0.4, 0.9, 3), colours.uniform(0.0, 0.4, 3)
    motion = np.random.default_rng(1000 * identity + clip)
    start, velocity = motion.uniform(0.4 * size, 0.6 * size, 2), motion.uniform(-1.0, 1.0, 2) * size / 64
    out = [render_face(size, start + velocity * f, 0.28 * size, 0.5 + 0.5 * math.sin(f + clip), face_rgb,
                       background_rgb) for f in range(frames)]
    return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])


def face_batch(batch: int = 2, sources: int = 1, size: int = 64) -> dict[str, torch.Tensor]:
    """A multi_source-style training batch: ``source [B, S, 3, H, W]``, ``driving [B, 1, 3, H, W]``, landmarks."""
    frames, landmarks = zip(*[_clip(i, 0, sources + 1, size) for i in range(batch)], strict=True)
    images = torch.from_numpy(np.stack(frames)).permute(0, 1, 4, 2, 3).float() / 255
    marks = torch.from_numpy(np.stack(landmarks))
    return {"source": images[:, :sources], "driving": images[:, sources:], "source_landmarks": marks[:, :sources],
            "driving_landmarks": marks[:, sources:]}


@pytest.fixture(scope="module")
def face_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FOMM-layout dataset with landmark annotations: 6 training clips (3 identities), 2 test clips, 8 frames, 64 px."""
    from reenact.data.video import write_frame_folder

    root = tmp_path_factory.mktemp("fsrt-faces")
    for split, clips in {"train": [(1, 0), (1, 1), (2, 0), (2, 1), (3, 0), (3, 1)], "test": [(4, 0), (5, 0)]}.items():
        (root / "annotations" / split).mkdir(parents=True)
        for identity, clip in clips:
            frames, landmarks = _clip(identity, clip, 8, 64)
            name = f"id{identity}#{clip}"
            write_frame_folder(root / split / name, frames)
            np.savez(root / "annotations" / split / f"{name}.npz", landmarks=landmarks)
    return root


def tiny(**overrides: object) -> reenact.models.ReenactmentModule:
    return reenact.models.create_model("fsrt", preset="tiny", **overrides)


# ------------------------------------------------------------------------------------------ encodings (Eq. 3-7)
def test_positional_encoding_matches_eq3_with_negative_octave() -> None:
    encoding = PositionalEncoding(num_octaves=4, start_octave=-1)
    coords = torch.rand(3, 20) * 3.8 - 1.9  # keypoints may leave the frame: (-2, 2)
    out = encoding(coords)
    n, d = 4, 20
    for c in range(d):
        for i, octave in enumerate(range(-1, 3)):
            angle = 2.0 ** octave * math.pi * coords[:, c]
            assert torch.allclose(out[:, c * n + i], torch.sin(angle), atol=1e-6)
            assert torch.allclose(out[:, d * n + c * n + i], torch.cos(angle), atol=1e-6)
    # Octave -1 has period 4: values in (-2, 2) stay distinguishable; octave 0 alone would alias p and p + 2.
    p = torch.tensor([[-1.5], [0.5]])
    assert not torch.allclose(PositionalEncoding(4, -1)(p)[0], PositionalEncoding(4, -1)(p)[1])
    assert torch.allclose(PositionalEncoding(4, 0)(p)[0], PositionalEncoding(4, 0)(p)[1], atol=1e-5)


def test_input_and_query_representation_layout() -> None:
    torch.manual_seed(0)
    generator = FSRTGenerator(kp_block_expansion=8, kp_max_features=32, kp_num_blocks=2, kp_scale_factor=0.5,
                              pix_octaves=3, kp_octaves=2, expression_size=5, expression_features_per_kp=2,
                              expression_hidden=(8,), patch_channels=4, latent_dim=16, encoder_depth=1,
                              encoder_heads=2, encoder_dim_head=4, encoder_mlp_dim=8, input_mlp_hidden=8,
                              decoder_depth=1, decoder_heads=2, decoder_dim_head=4, decoder_mlp_dim=8,
                              render_hidden=(8,))
    images, keypoints, expression = torch.rand(1, 2, 3, 8, 8), torch.rand(1, 2, 10, 2) * 2 - 1, torch.randn(1, 2, 5)
    rep = generator.input_representation(images, keypoints, expression)
    # Eq. 6 in the released channel order [c_p, gamma_key(k_S), gamma_pix(p), e_S].
    assert rep.shape == (1, 2, 3 + 80 + 12 + 5, 8, 8)
    assert torch.equal(rep[:, :, :3], images)
    key = generator.keypoint_encoding(keypoints.flatten(-2))  # [1, 2, 80]
    assert torch.allclose(rep[0, 1, 3:83, 5, 2], key[0, 1])
    grid = pixel_grid(8, 8)
    assert torch.allclose(grid[5 * 8 + 2], torch.tensor([(2 + 0.5) / 4 - 1, (5 + 0.5) / 4 - 1]))
    assert torch.allclose(rep[0, 0, 83:95, 5, 2], generator.pixel_encoding(grid[5 * 8 + 2]))
    assert torch.equal(rep[0, 1, 95:, 3, 3], expression[0, 1])
    # Eq. 7: the decoder's first layer sees [gamma_key(k_D), gamma_pix(q), e_D]; check through a hook.
    seen = {}

    def keep_query(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        seen["query"] = args[0]

    handle = generator.decoder.allocation_transformer.input_mlp[0].register_forward_hook(keep_query)
    z = torch.randn(1, 4, 16)
    generator.decode(z, grid[:3], keypoints[:, 0], expression[:, 0])
    handle.remove()
    query = seen["query"][0, 2]
    assert torch.allclose(query[:80], key[0, 0]) and torch.allclose(query[80:92], generator.pixel_encoding(grid[2]))
    assert torch.allclose(query[92:], expression[0, 0])


def test_expression_network_eq8_to_10_by_hand() -> None:
    torch.manual_seed(0)
    net = ExpressionEncoder(in_channels=4, num_keypoints=3, features_per_keypoint=2, hidden=(5, 6, 7),
                            expression_size=4)
    features, heatmaps = torch.randn(2, 4, 9, 9), torch.rand(2, 3, 3, 3)
    filtered = net.expression(features)  # [2, 6, 3, 3]
    pooled = torch.zeros(2, 3 * 2)
    for n in range(2):
        for i in range(3):  # keypoint i uses channels i * n_f ... (Eq. 8), concatenated keypoint by keypoint (Eq. 9)
            for c in range(2):
                pooled[n, i * 2 + c] = (heatmaps[n, i] * filtered[n, i * 2 + c]).sum()
    expected = net.expression_mlp(pooled)  # Eq. 10
    assert torch.allclose(net(features, heatmaps), expected, atol=1e-5)
    assert sum(isinstance(m, nn.Linear) for m in net.expression_mlp) == 4  # the 4-layer MLP X_M


# ------------------------------------------------------------------------------------------ shapes, decoding
def test_shapes_chunked_decoding_and_one_to_three_sources() -> None:
    torch.manual_seed(0)
    model = tiny().eval()
    generator = model.generator
    assert generator.render_chunk == 4096
    for sources in (1, 2, 3):
        batch = face_batch(batch=2, sources=sources)
        b = 2
        with torch.no_grad():
            kp, expr = generator.extract(batch["source"].flatten(0, 1))
            assert kp.shape == (b * sources, 10, 2) and expr.shape == (b * sources, 32)
            z = generator.encode(batch["source"], kp.unflatten(0, (b, sources)), expr.unflatten(0, (b, sources)))
            assert z.shape == (b, sources * 8 * 8, 96)  # (64 / 8)^2 tokens per source, concatenated
            kp_d, expr_d = generator.extract(batch["driving"][:, 0])
            whole = generator.render(z, kp_d, expr_d, 64, 64, chunk_size=64 * 64)
            chunked = generator.render(z, kp_d, expr_d, 64, 64, chunk_size=333)  # uneven last chunk
            assert whole.shape == (b, 3, 64, 64)
            assert torch.allclose(whole, chunked, atol=1e-5)
            out = model.animate(batch["source"], torch.cat([batch["driving"], batch["source"][:, :1]], 1))
        assert out.shape == (b, 2, 3, 64, 64) and out.min() >= 0 and out.max() <= 1


def test_relative_motion_and_best_initial_frame() -> None:
    torch.manual_seed(0)
    model = tiny().configure_evaluation(chunk=2).eval()
    batch = face_batch(batch=1, sources=1)
    frames, landmarks = _clip(7, 0, 5, 64)
    driving = torch.from_numpy(frames).permute(0, 3, 1, 2).float()[None] / 255
    driving_landmarks = torch.from_numpy(landmarks)[None]
    # The best frame is invariant to translation and scale of the landmarks (normalised by mean and hull area).
    source_landmarks = driving_landmarks[:, 3] * 1.3 + 7.0
    assert best_initial_frame(source_landmarks, driving_landmarks).tolist() == [3]
    with torch.no_grad():
        out = model.generator.animate(batch["source"], driving, relative=True, initial_index=torch.tensor([3]))
        # At the initial frame relative motion gives the source keypoints: the source pose, driving expression.
        kp_s, e_s = model.generator.extract(batch["source"][:, 0])
        z = model.generator.encode(batch["source"], kp_s[:, None], e_s[:, None])
        _, e_d = model.generator.extract(driving[:, 3])
        expected = model.generator.render(z, kp_s, e_d, 64, 64).clamp(0, 1)
        assert torch.allclose(out[:, 3], expected, atol=1e-5)
        absolute = model.animate(batch["source"], driving)
        assert not torch.allclose(absolute, out)
        # The module picks that frame from landmarks; its evaluation path does the same across frame chunks.
        by_landmarks = model.animate(batch["source"], driving, relative=True,
                                     source_landmarks=source_landmarks[:, None], driving_landmarks=driving_landmarks)
        assert torch.allclose(by_landmarks, out, atol=1e-6)
        model._eval_landmarks = (source_landmarks[:, None], driving_landmarks)
        assert torch.allclose(model.generate_video(batch["source"], driving, relative=True), out, atol=1e-5)


# ------------------------------------------------------------------------------------------ regularisation
def test_regularisation_terms_by_hand() -> None:
    e = torch.tensor([[1.0, 2.0, 4.0], [0.0, 1.0, 1.0], [3.0, 0.0, 2.0], [2.0, 2.0, 2.0]])
    f = e.flip(0) * 0.5
    # Eq. 11/12: 1/|e| ||a - b||^2 averaged over vectors.
    expected_inv = sum(((e[i] - f[i]) ** 2).sum().item() / 3 for i in range(4)) / 4
    assert invariance_loss(e, f).item() == pytest.approx(expected_inv)
    # Eq. 15: unbiased variance along features, hinge at std 1 with eps 1e-4.
    stds = [math.sqrt(np.var(row.numpy(), ddof=1) + 1e-4) for row in e]
    assert variance_loss(e).item() == pytest.approx(sum(max(0.0, 1 - s) for s in stds) / 4, rel=1e-5)
    # Eq. 14: squared covariance entries (off-diagonal and diagonal) summed, over c.
    x = e.numpy()
    centred = x - x.mean(0)
    cov = centred.T @ centred / (4 - 1)
    assert covariance_loss(e).item() == pytest.approx((cov ** 2).sum() / 3, rel=1e-5)
    # Eq. 13 + 16 on [B=2, n_src=1] sources and drivings.
    src_a1, src_a2 = e[:2, None], f[:2, None]
    drv, drv_crop = e[2:], f[2:]
    reg = regularisation_loss(src_a1, src_a2, drv, drv_crop, invariance_weight=1.0, covariance_weight=1.0,
                              variance_weight=0.2)
    e1 = torch.stack([e[0], e[2], e[1], e[3]])  # [e_S^(1), e_D^(1), e_S^(2), e_D^(2)]
    e2 = torch.stack([f[0], f[2], f[1], f[3]])
    expected = (0.5 * (invariance_loss(src_a1, src_a2) + invariance_loss(drv, drv_crop))
                + covariance_loss(e1) + covariance_loss(e2) + 0.2 * (variance_loss(e1) + variance_loss(e2)))
    assert reg["total"].item() == pytest.approx(expected.item(), rel=1e-6)
    without = regularisation_loss(src_a1, src_a2, drv, drv_crop, statistical=False)
    assert set(without) == {"invariance", "invariance_driving", "total"}


def test_pixel_sampling_and_augmentations() -> None:
    torch.manual_seed(0)
    grad, rest = strided_pixel_indices(3, 8, 6, 2)
    assert grad.shape == (3, 12) and rest.shape == (3, 36)
    for g, r in zip(grad, rest, strict=True):
        assert sorted(torch.cat([g, r]).tolist()) == list(range(48))
        rows, cols = g // 6, g % 6
        assert len(set((rows % 2).tolist())) == 1 and len(set((cols % 2).tolist())) == 1  # one offset per sample
    random = random_pixel_indices(2, 100, 30)
    assert random.shape == (2, 30) and all(len(set(r.tolist())) == 30 for r in random)
    # Out-of-frame crop: a dot at p in the frame appears at (p - c) / half in the crop (keypoints may leave
    # [-1, 1]); the box is anisotropic, as the release's (its sides move independently).
    size = 33
    frame = torch.zeros(1, 1, 3, size, size)
    frame[..., 24, 20] = 1.0  # row 24, column 20
    p = torch.tensor([[[2 * 20 / (size - 1) - 1, 2 * 24 / (size - 1) - 1], [-0.9, 0.0]]])
    box = torch.tensor([[-0.5, -0.25, 1.0, 0.75]])
    moved = crop_points(p, box)[0, 0]
    crop = crop_frames(frame, box)[0, 0, 0]
    peak = divmod(int(crop.argmax()), size)
    assert abs(peak[1] - (moved[0] + 1) * (size - 1) / 2) <= 1 and abs(peak[0] - (moved[1] + 1) * (size - 1) / 2) <= 1
    assert crop_points(p, box)[0, 1, 0] < -1  # a point left of the box leaves the crop
    # The release's margins: each side of the source keypoints' box moves out by up to 20 % of its width
    # (left/right), 50 % of its height (above), 15 % (below); never inwards; a skipped sample keeps the frame.
    points = torch.tensor([[-0.4, -0.3], [0.4, 0.5], [0.0, 0.1]]).expand(4096, 3, 2)
    boxes = out_of_frame_boxes(points, probability=1.0)
    width, height = 0.8, 0.8
    grown = torch.stack([-0.4 - boxes[:, 0], -0.3 - boxes[:, 1], boxes[:, 2] - 0.4, boxes[:, 3] - 0.5], 1)
    limits = torch.tensor([0.2 * width, 0.5 * height, 0.2 * width, 0.15 * height])
    assert (grown >= -1e-6).all() and (grown <= limits + 1e-6).all()
    assert (grown.amax(0) > 0.9 * limits).all()  # uniform up to the margin
    # The crop is independent per side: the aspect ratio varies.
    aspect = (boxes[:, 2] - boxes[:, 0]) / (boxes[:, 3] - boxes[:, 1])
    assert float(aspect.std()) > 0.02
    skipped = out_of_frame_boxes(points[:8], probability=0.0)
    assert torch.equal(skipped, torch.tensor([[-1.0, -1.0, 1.0, 1.0]]).expand(8, 4))
    # Omega's box (Eq. 12): the face box +25 % of its height above, +5 % below, no side margin.
    omega = face_boxes(points[:1])
    assert torch.allclose(omega, torch.tensor([[-0.4, -0.3 - 0.2, 0.4, 0.5 + 0.04]]))
    # Identity jitter keeps the frames; a full-frame face box makes Omega the identity crop.
    images = torch.rand(2, 3, 3, 16, 16)
    identity = torch.tensor([[1.0, 1.0, 1.0, 0.0]] * 2)
    assert torch.allclose(color_jitter(images, identity), images, atol=1e-6)
    jittered = color_jitter(images, jitter_parameters(2, 0.1, 0.1, 0.1, 0.1))
    assert jittered.shape == images.shape and not torch.allclose(jittered, images)
    full_box = torch.tensor([[-1.0, -1.0, 1.0, 1.0]] * 2)
    assert torch.allclose(crop_boxes(images[:, 0], full_box), images[:, 0], atol=1e-5)


def test_landmarks_to_ten_keypoints() -> None:
    landmarks = torch.from_numpy(_face_template() * 20 + 31.5).float()[None]  # centred in a 64 px frame
    keypoints = landmarks_to_keypoints(landmarks, (64, 64))
    assert keypoints.shape == (1, 10, 2) and len(IBUG68_TO_KEYPOINTS) == 10
    normalised = (landmarks * 2 / 63 - 1)[0]
    assert torch.allclose(keypoints[0, 0], normalised[36:42].mean(0))  # right eye centre
    assert torch.allclose(keypoints[0, 9], normalised[8])  # chin
    assert keypoints[0, 0, 0] < keypoints[0, 1, 0]  # the subject's right eye is on the image's left


# ------------------------------------------------------------------------------------------ training phases
def test_each_stage_and_phase_loss_falls() -> None:
    torch.manual_seed(0)
    model = tiny(kp_pretrain_steps=0, phase2_start=1, phase3_start=2, disc_warmup_steps=0)
    # Phase II's perceptual loss, built on an explicitly given, untrained test backbone (the real loss needs the
    # ImageNet VGG19 weights, absent here).
    untrained_test_backbone = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                                            nn.ReLU())
    model.perceptual = VGG19Perceptual(layers=(1, 3), weights=(0.01, 0.01), scales=(1.0,),
                                       backbone=untrained_test_backbone)
    batch = face_batch(batch=2, sources=1)
    generator = model.generator

    def run(stage: str, steps: int) -> tuple[list[float], list[float]]:
        totals, disc = [], []
        g_opt = torch.optim.Adam([p for n in ("expression_encoder", "encoder", "decoder")
                                  for p in getattr(generator, n).parameters()], lr=1e-3)
        d_opt = torch.optim.Adam(model.discriminator.parameters(), lr=1e-3)
        k_opt = torch.optim.Adam(generator.kp_detector.parameters(), lr=1e-3)
        for _ in range(steps):
            if stage == "kp":
                generator.set_kp_detector_trainable(True)
                loss = model.keypoint_pretraining_loss(batch)["total"]
                k_opt.zero_grad()
                loss.backward()
                k_opt.step()
                totals.append(loss.item())
                continue
            generator.set_kp_detector_trainable(False)
            step = {"I": 0, "II": 1, "III": 2}[stage]  # FSRT iteration in that phase
            losses, extras = model.generator_losses(batch, step)
            assert ("perceptual" in losses) == (stage != "I") and ("gan" in losses) == (stage == "III")
            g_opt.zero_grad()
            losses["total"].backward()
            g_opt.step()
            totals.append(losses["total"].item())
            if stage == "III":
                d_loss = model.discriminator_losses(extras)["discriminator"]
                d_opt.zero_grad()
                d_loss.backward()
                d_opt.step()
                disc.append(d_loss.item())
        return totals, disc

    model.train()
    for stage, steps in (("kp", 12), ("I", 12), ("II", 8), ("III", 8)):
        totals, disc = run(stage, steps)
        assert all(math.isfinite(t) for t in totals)
        assert np.mean(totals[-3:]) < np.mean(totals[:3]), (stage, totals)
        if stage == "III":
            assert np.mean(disc[-3:]) < np.mean(disc[:3]), disc


def test_fit_all_stages_then_checkpoint_round_trip(face_root: Path, tmp_path: Path) -> None:
    from reenact.data import ReenactDataModule

    class Recorder(L.Callback):
        def __init__(self) -> None:
            self.kp_sums: list[float] = []

        def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: object) -> None:
            self.kp_sums.append(sum(p.sum().item() for p in module.generator.kp_detector.parameters()))

    L.seed_everything(0)
    model = tiny(kp_pretrain_steps=2, phase2_start=2, phase3_start=4, disc_warmup_steps=1, lr_warmup_steps=2)
    recorder = Recorder()
    data = ReenactDataModule(root=str(face_root), image_size=64, batch_size=2, max_frames_per_video=4)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=12, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=1, num_sanity_val_steps=0,
                        val_check_interval=8, check_val_every_n_epoch=None, use_distributed_sampler=False,
                        default_root_dir=tmp_path, callbacks=[recorder])
    trainer.fit(model, datamodule=data)
    # 2 detector iterations + 2 phase I + 2 phase II (1 optimizer step each) + 3 phase III (2 steps) = 12 steps.
    assert int(model.train_iteration) == 9 and trainer.global_step == 12
    kp = recorder.kp_sums
    assert kp[0] != kp[1] and len(set(kp[1:])) == 1  # the detector learns in its stage, then stays frozen
    opt_g, opt_d, opt_kp = trainer.optimizers
    assert opt_d.state and opt_kp.state and opt_g.param_groups[0]["lr"] > 0
    assert list(tmp_path.rglob("samples/*.png"))  # the shared validation ran through animate

    path = tmp_path / "fsrt.ckpt"
    trainer.save_checkpoint(path)
    loaded = reenact.models.load_from_checkpoint(path)
    assert type(loaded).__name__ == "FSRT" and int(loaded.train_iteration) == 9
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a.cpu(), b), name
    batch = face_batch(batch=1, sources=2)
    model.eval()
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(model.animate(batch["source"], batch["driving"]),
                           loaded.animate(batch["source"], batch["driving"]))


# ------------------------------------------------------------------------------------------ released layout
@pytest.fixture(scope="module")
def paper_model() -> reenact.models.ReenactmentModule:
    # The paper preset with the VGG19 perceptual loss off (its ImageNet weights are not installed here).
    return reenact.models.create_model("fsrt", preset="paper", perceptual_weights=[0.0] * 5)


def test_paper_preset_parameter_counts(paper_model: reenact.models.ReenactmentModule) -> None:
    generator = paper_model.generator
    counts = {part: sum(p.numel() for p in getattr(generator, part).parameters()) for part in PAPER_COUNTS}
    assert counts == PAPER_COUNTS
    assert paper_model.image_size == 256 and paper_model.hparams.phase2_start == 200_000


def test_official_layout_loads_without_missing_or_unexpected_keys(paper_model: reenact.models.ReenactmentModule,
                                                                  tmp_path: Path) -> None:
    if not LAYOUTS.is_file():
        pytest.skip(f"the reference layouts {LAYOUTS} are not in this checkout")
    reference = json.loads(LAYOUTS.read_text())["fsrt"]
    assert official_layout(paper_model) == {part: reference[part] for part in
                                            ("kp_detector", "expression_encoder", "encoder", "decoder")}
    generator = torch.Generator().manual_seed(0)

    def random_state(part: str) -> dict[str, torch.Tensor]:
        return {k: torch.randn(shape, generator=generator) if shape else torch.tensor(3)
                for k, shape in reference[part].items()}

    bundle = {part: random_state(part) for part in ("encoder", "decoder", "expression_encoder")}
    bundle["optimizer"] = {"state": {}, "param_groups": []}  # training state in the release is ignored
    kp_state = random_state("kp_detector")
    loaded = load_official(paper_model, checkpoint=bundle, kp_detector={"kp_detector": kp_state})
    assert loaded == {part: len(reference[part]) for part in PAPER_COUNTS}
    state = paper_model.generator.state_dict()
    for part, tensors in (*((p, bundle[p]) for p in ("encoder", "decoder", "expression_encoder")),
                          ("kp_detector", kp_state)):
        for key, value in tensors.items():
            assert torch.equal(state[f"{part}.{key}"], value.to(state[f"{part}.{key}"].dtype)), key
    # The small decoder's layout and a file round trip (weights-only), through a small-decoder model's decoder.
    small = FSRTDecoder(heads=6, mlp_dim=768, render_hidden=(1536, 768))
    assert {k: list(v.shape) for k, v in small.state_dict().items()} == reference["small_decoder"]
    small_state = random_state("small_decoder")
    with pytest.raises(ValueError, match="shape mismatch"):
        load_official(paper_model, checkpoint={**bundle, "decoder": small_state})
    path = tmp_path / "kp_detector.pt"
    torch.save(kp_state, path)
    paper_model.load_kp_detector(str(path))
    assert torch.equal(paper_model.generator.kp_detector.kp.weight, kp_state["kp.weight"])


# ------------------------------------------------------------------------------------------ DDP
DDP_SCRIPT = """
import json, sys
from pathlib import Path
import lightning as L
import torch
from reenact.data import ReenactDataModule
from reenact.models import create_model


class Checksums(L.Callback):
    def on_train_end(self, trainer, module):
        sums = torch.stack([t.detach().double().sum() for t in (*module.parameters(), *module.buffers())
                            if t.is_floating_point()])
        gathered = trainer.strategy.all_gather(sums)
        if trainer.is_global_zero:
            result = {"sums": gathered.tolist(), "iteration": int(module.train_iteration), "steps": trainer.global_step}
            Path(sys.argv[2]).write_text(json.dumps(result))


L.seed_everything(0)
model = create_model("fsrt", preset="tiny", kp_pretrain_steps=2, phase2_start=1, phase3_start=2, disc_warmup_steps=1)
data = ReenactDataModule(root=sys.argv[1], image_size=64, batch_size=2, max_frames_per_video=4)
trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=9, use_distributed_sampler=False,
                    logger=False, enable_checkpointing=False, enable_progress_bar=False, limit_val_batches=0,
                    num_sanity_val_steps=0, callbacks=[Checksums()])
trainer.fit(model, datamodule=data)
"""


@pytest.mark.slow
def test_ddp_two_process_fit_keeps_ranks_in_sync(face_root: Path, tmp_path: Path) -> None:
    """2-process DDP fit through every stage (detector, phases I-III with generator and discriminator steps):
    the ranks see different batches, and their parameters and buffers end identical."""
    script = tmp_path / "fit_ddp.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "checksums.json"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    run = subprocess.run([sys.executable, str(script), str(face_root), str(out)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(out.read_text())
    # 2 detector + 1 phase I + 1 phase II iterations, then phase III (2 optimizer steps each) until 9 steps.
    assert result["iteration"] == 7 and result["steps"] == 10
    rank0, rank1 = (np.array(s) for s in result["sums"])
    assert np.array_equal(rank0, rank1)


def test_patch_init_makes_the_set_latents_sensitive_to_the_source() -> None:
    """``patch_init="kaiming"`` (+ colour gain) keeps the bias-free patch CNN's scale, so the tokens of different
    source images differ clearly at initialisation; the default keeps PyTorch's init (the released code's)."""
    batch = face_batch(batch=4, sources=1)

    def spread(**overrides: object) -> float:
        torch.manual_seed(0)
        generator = tiny(generator={"num_conv_blocks": 3, **overrides}).generator.eval()
        with torch.no_grad():
            kp, expr = generator.extract(batch["source"].flatten(0, 1))
            rep = generator.input_representation(batch["source"], kp[:, None], expr[:, None])
            tokens = generator.encoder.per_patch_linear(generator.encoder.conv_blocks(rep.flatten(0, 1)))
        return (tokens.std(0).mean() / tokens.pow(2).mean().sqrt()).item()

    default = spread(patch_init="default", patch_rgb_gain=1.0, render_bias=None)
    assert spread(patch_init="kaiming", patch_rgb_gain=1.0) > 10 * default
    assert spread(patch_init="kaiming", patch_rgb_gain=2.0) > spread(patch_init="kaiming", patch_rgb_gain=1.0)
    model = tiny(generator={"render_bias": 0.5})
    assert torch.all(model.generator.decoder.render_mlp[-1].bias == 0.5)
    with pytest.raises(ValueError, match="patch_init"):
        tiny(generator={"patch_init": "xavier"})


def test_positional_attention_init_makes_the_decoder_look_up_the_token_under_each_pixel() -> None:
    """After the init, head 0 of the first cross-attention block attends most to the source token whose patch
    holds the query pixel (before: near-uniform attention and a mean-colour image)."""
    from reenact.models import create_model
    from reenact.models.fsrt.torch_model import pixel_grid

    torch.manual_seed(0)
    generator = create_model("fsrt", preset="tiny").generator.eval()
    images = torch.rand(12, 3, 64, 64)
    keypoints, expression = generator.extract(images)

    def head0_argmax() -> torch.Tensor:
        z = generator.encode(images[:2, None], keypoints[:2, None], expression[:2, None])
        pixels = pixel_grid(64, 64)
        query = torch.cat([generator.encode_keypoints(keypoints[:2])[:, None].expand(-1, 4096, -1),
                           generator.pixel_encoding(pixels)[None].expand(2, -1, -1),
                           expression[:2, None].expand(-1, 4096, -1)], dim=-1)
        predictor = generator.decoder.allocation_transformer
        block = predictor.transformer.layers[0][0]
        q = block.fn.to_q(block.norm(predictor.input_mlp(query)))
        k, _ = block.fn.to_kv(z).chunk(2, dim=-1)
        head = q.shape[-1] // block.fn.heads
        return torch.einsum("bqd,bkd->bqk", q[..., :head], k[..., :head]).argmax(-1)  # [2, 4096] token index

    patch = 64 // 2 ** generator.num_conv_blocks  # 8 x 8 pixels per token
    rows, cols = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    under = ((rows // patch) * (64 // patch) + cols // patch).flatten()
    with torch.no_grad():
        before = (head0_argmax() == under).float().mean()
        r2 = generator.positional_attention_init(images, keypoints, expression)
        after = (head0_argmax() == under).float().mean()
    assert r2 > 0.5
    assert before < 0.1 and after > 0.6, (before, after)


def test_generator_config_is_one_section_merged_field_by_field_and_upgraded_from_flat_checkpoints() -> None:
    """The architecture is declared once (``FSRTConfig``): a ``generator`` override changes only the fields it names,
    the module stores it as a plain mapping (weights-only checkpoints), unknown fields are refused by name, and the
    flat hyper-parameters of checkpoints written before the section existed are moved into it."""
    from reenact.models.fsrt import FSRTConfig
    from reenact.models.fsrt.lightning_model import FSRT

    model = tiny(generator={"latent_dim": 48})
    assert model.generator.config.latent_dim == 48
    assert model.generator.config.patch_init == "kaiming"  # the preset's other fields stay
    assert model.hparams["generator"]["latent_dim"] == 48 and isinstance(model.hparams["generator"], dict)
    assert model.generator.encoder.per_patch_linear.out_channels == 48
    with pytest.raises(TypeError, match="latent_dimension"):
        tiny(generator={"latent_dimension": 48})
    legacy = {"image_size": 64, "latent_dim": 48, "render_hidden": None, "expression_hidden": [8, 8], "lr": 1e-3}
    upgraded = FSRT.upgrade_hyper_parameters(legacy)
    assert upgraded == {"image_size": 64, "lr": 1e-3, "generator": {"latent_dim": 48, "expression_hidden": [8, 8]}}
    config = FSRTConfig.coerce(upgraded["generator"])
    assert config.render_hidden == FSRTConfig().render_hidden and config.expression_hidden == (8, 8)
    assert FSRT.upgrade_hyper_parameters(upgraded) == upgraded
