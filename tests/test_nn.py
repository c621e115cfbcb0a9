"""Tests of the shared building blocks (``reenact.nn``) and the keypoint-warp generator (CPU, fast)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reenact.models.keypoint_warp import KeypointWarpGenerator
from reenact.nn import (
    AdaIN,
    AdaINResBlock2d,
    AntiAliasInterpolation2d,
    ConvGRUCell,
    DenseMotionNetwork,
    DownBlock2d,
    Hourglass,
    KeypointDetector,
    MultiScaleDiscriminator,
    PatchDiscriminator,
    PositionalEncoding,
    RandomTPS,
    ResBlock2d,
    SameBlock2d,
    SEBlock,
    UpBlock2d,
    convex_hull_area,
    discriminator_loss,
    equivariance_loss,
    feature_matching_loss,
    flow_to_grid,
    generator_loss,
    grid_to_flow,
    heatmap_to_keypoints,
    hinge_d_loss,
    hinge_g_loss,
    identity_grid,
    keypoints_to_heatmaps,
    lsgan_d_loss,
    lsgan_g_loss,
    make_coordinate_grid,
    nonsaturating_d_loss,
    nonsaturating_g_loss,
    normalized_to_pixels,
    occlusion_blend,
    pixels_to_normalized,
    r1_penalty,
    relative_keypoints,
    softmax_heatmaps,
    warp,
)

LAYOUTS = Path(__file__).resolve().parent / "data" / "official_state_dict_layouts.json"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def smooth_image(b: int = 1, c: int = 3, h: int = 32, w: int = 32) -> torch.Tensor:
    """A smooth random image in [0, 1] (upsampled coarse noise), so interpolation is well-behaved."""
    coarse = torch.rand(b, c, max(h // 8, 2), max(w // 8, 2))
    return F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=True)


# --------------------------------------------------------------------------------------------- blocks


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_plain_block_shapes(norm: str) -> None:
    x = torch.randn(2, 8, 16, 16)
    assert ResBlock2d(8, norm=norm)(x).shape == (2, 8, 16, 16)
    assert DownBlock2d(8, 16, norm=norm)(x).shape == (2, 16, 8, 8)
    assert UpBlock2d(8, 4, norm=norm)(x).shape == (2, 4, 32, 32)
    assert SameBlock2d(8, 5, kernel_size=7, padding=3, norm=norm)(x).shape == (2, 5, 16, 16)


def test_fomm_block_parameter_names() -> None:
    assert set(DownBlock2d(3, 4).state_dict()) == {
        "conv.weight",
        "conv.bias",
        "norm.weight",
        "norm.bias",
        "norm.running_mean",
        "norm.running_var",
        "norm.num_batches_tracked",
    }
    assert {"conv1.weight", "conv2.weight", "norm1.weight", "norm2.running_var"} <= set(
        ResBlock2d(4).state_dict()
    )


def test_conditioned_blocks_shapes() -> None:
    x = torch.randn(2, 8, 16, 16)
    cond = torch.randn(2, 12)
    assert AdaIN(8, 12)(x, cond).shape == x.shape
    assert AdaINResBlock2d(8, 16, 12, mode="same")(x, cond).shape == (2, 16, 16, 16)
    assert AdaINResBlock2d(8, 16, 12, mode="down")(x, cond).shape == (2, 16, 8, 8)
    assert AdaINResBlock2d(8, 4, 12, mode="up")(x, cond).shape == (2, 4, 32, 32)
    assert AdaINResBlock2d(8, 8, 12)(x, cond).shape == x.shape
    assert SEBlock(8, reduction=4)(x).shape == x.shape
    cell = ConvGRUCell(8, 6)
    h = cell(x)
    assert h.shape == (2, 6, 16, 16)
    assert cell(x, h).shape == (2, 6, 16, 16)


def test_adain_starts_as_instance_norm_and_uses_condition() -> None:
    x = torch.randn(2, 4, 8, 8)
    layer = AdaIN(4, 3)
    nn.init.zeros_(layer.affine.weight)  # only the biases remain: gamma = 1, beta = 0
    expected = F.instance_norm(x)
    assert torch.allclose(layer(x, torch.randn(2, 3)), expected, atol=1e-5)
    layer = AdaIN(4, 3)
    c1, c2 = torch.randn(2, 3), torch.randn(2, 3)
    assert not torch.allclose(layer(x, c1), layer(x, c2))


def test_anti_alias_interpolation() -> None:
    down = AntiAliasInterpolation2d(3, 0.25)
    assert down.weight.shape == (3, 1, 13, 13)  # FOMM/FSRT ``down.weight``
    assert torch.allclose(down.weight.sum(dim=(1, 2, 3)), torch.ones(3))
    x = torch.full((1, 3, 64, 64), 0.7)
    y = down(x)
    assert y.shape == (1, 3, 16, 16)
    # A constant image stays constant away from the zero-padded border.
    assert torch.allclose(y[..., 4:-4, 4:-4], torch.full_like(y[..., 4:-4, 4:-4], 0.7), atol=1e-5)
    assert AntiAliasInterpolation2d(3, 1.0)(x) is x
    assert AntiAliasInterpolation2d(3, 0.75)(x).shape == (1, 3, 48, 48)
    assert "weight" not in AntiAliasInterpolation2d(3, 0.5, persistent=False).state_dict()


@pytest.mark.parametrize("scale", [0.5, 0.25, 0.125])
@pytest.mark.parametrize("size", [63, 64])
def test_anti_alias_strided_blur_equals_blur_then_subsample(scale: float, size: int) -> None:
    """The strided blur gives FOMM's values (blur every pixel, keep every k-th) and their gradients."""
    torch.manual_seed(0)
    down = AntiAliasInterpolation2d(3, scale)
    x = torch.rand(2, 3, size, size, requires_grad=True)
    k = round(1 / scale)
    reference = F.conv2d(F.pad(x, (down.ka, down.kb, down.ka, down.kb)), down.weight, groups=3)[:, :, ::k, ::k]
    out = down(x)
    assert out.shape == reference.shape
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-6)
    grad, = torch.autograd.grad(out.square().sum(), x)
    grad_reference, = torch.autograd.grad(reference.square().sum(), x)
    torch.testing.assert_close(grad, grad_reference, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------------------------- hourglass


def test_hourglass_shapes() -> None:
    hg = Hourglass(block_expansion=8, in_features=5, num_blocks=3, max_features=32)
    assert hg.out_filters == 13
    assert hg(torch.randn(2, 5, 32, 32)).shape == (2, 13, 32, 32)
    with pytest.raises(ValueError, match="divisible"):
        hg(torch.randn(1, 5, 20, 20))


def test_keypoint_detector_matches_official_fsrt_layout() -> None:
    expected = json.loads(LAYOUTS.read_text())["fsrt"]["kp_detector"]
    detector = KeypointDetector(
        num_keypoints=10,
        num_channels=3,
        block_expansion=32,
        max_features=1024,
        num_blocks=5,
        temperature=0.1,
        scale_factor=0.25,
        estimate_jacobian=False,
        pad=0,
    )
    got = {k: list(v.shape) for k, v in detector.state_dict().items()}
    assert list(got) == list(expected)  # same keys, same order
    assert got == expected  # same shapes
    n_params = sum(p.numel() for p in detector.parameters())
    assert abs(n_params / 1e6 - 14.15) <= 0.01, n_params


def test_keypoint_detector_forward() -> None:
    detector = KeypointDetector(
        5, 3, block_expansion=8, max_features=32, num_blocks=3, temperature=0.1, scale_factor=0.5
    )
    out = detector(torch.rand(2, 3, 64, 64))
    assert out["keypoints"].shape == (2, 5, 2)
    assert out["heatmaps"].shape == (2, 5, 26, 26)  # 32 - 6 with the 7x7 unpadded heatmap conv
    assert out["features"].shape == (2, 8 + 3, 32, 32)
    assert torch.allclose(out["heatmaps"].sum(dim=(2, 3)), torch.ones(2, 5), atol=1e-5)
    assert out["keypoints"].abs().max() <= 1.0
    jac = KeypointDetector(5, 3, 8, 32, 3, 0.1, 0.5, estimate_jacobian=True, pad=3)(torch.rand(1, 3, 64, 64))
    assert jac["heatmaps"].shape == (1, 5, 32, 32)
    assert torch.allclose(jac["jacobians"], torch.eye(2).expand(1, 5, 2, 2), atol=1e-5)  # identity init


# --------------------------------------------------------------------------------------------- keypoints


def test_coordinate_grid_convention() -> None:
    grid = make_coordinate_grid(3, 5)
    assert grid.shape == (3, 5, 2)
    assert torch.allclose(grid[0, 0], torch.tensor([-1.0, -1.0]))
    assert torch.allclose(grid[-1, -1], torch.tensor([1.0, 1.0]))
    assert torch.allclose(grid[0, :, 0], torch.linspace(-1, 1, 5))  # x along the width
    assert torch.allclose(grid[:, 0, 1], torch.linspace(-1, 1, 3))  # y along the height
    px = torch.tensor([[0.0, 0.0], [4.0, 2.0], [2.0, 1.0]])
    assert torch.allclose(
        pixels_to_normalized(px, (3, 5)), torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]])
    )
    assert torch.allclose(normalized_to_pixels(pixels_to_normalized(px, (3, 5)), (3, 5)), px)


def test_heatmap_peak_at_keypoint() -> None:
    h, w = 21, 31
    grid = make_coordinate_grid(h, w)
    kp = torch.stack([grid[4, 7], grid[15, 22]]).unsqueeze(0)  # keypoints on pixel centres
    heat = keypoints_to_heatmaps(kp, (h, w), variance=0.01)
    assert heat.shape == (1, 2, h, w)
    for k, (i, j) in enumerate([(4, 7), (15, 22)]):
        flat = int(heat[0, k].argmax())
        assert (flat // w, flat % w) == (i, j)
        assert torch.isclose(heat[0, k, i, j], torch.tensor(1.0))
    d2 = (grid[10, 7] - kp[0, 0]).pow(2).sum()
    assert torch.isclose(heat[0, 0, 10, 7], torch.exp(-0.5 * d2 / 0.01))


def test_soft_argmax_inverts_sharp_heatmap() -> None:
    kp = torch.rand(3, 4, 2) * 1.6 - 0.8
    heat = keypoints_to_heatmaps(kp, (64, 64), variance=0.002)
    assert torch.allclose(heatmap_to_keypoints(heat), kp, atol=1e-3)
    logits = 10 * keypoints_to_heatmaps(kp, (64, 64), variance=0.002)
    probs = softmax_heatmaps(logits, temperature=0.01)
    assert torch.allclose(probs.sum(dim=(2, 3)), torch.ones(3, 4), atol=1e-5)
    assert torch.allclose(heatmap_to_keypoints(probs), kp, atol=2e-2)


def test_convex_hull_area() -> None:
    square = torch.tensor([[[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [0.0, 0.0], [0.5, 0.2]]])
    assert torch.allclose(convex_hull_area(square), torch.tensor([4.0]))
    assert convex_hull_area(torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])) == 0.0  # collinear
    scipy_spatial = pytest.importorskip("scipy.spatial")
    pts = torch.rand(5, 10, 2)
    ref = torch.tensor(
        [scipy_spatial.ConvexHull(p.double().numpy()).volume for p in pts], dtype=torch.float32
    )
    assert torch.allclose(convex_hull_area(pts), ref, atol=1e-6)


def test_relative_keypoints_formula() -> None:
    src = torch.rand(2, 10, 2) - 0.5
    drv = torch.rand(2, 10, 2) - 0.5
    init = torch.rand(2, 10, 2) - 0.5
    assert torch.allclose(relative_keypoints(src, drv, init), src + drv - init)
    # Convex-hull scale: a source twice as large as the initial driving frame doubles the motion.
    init = torch.rand(2, 10, 2) * 0.4 - 0.2
    src = 2.0 * init + 0.1
    expected = src + 2.0 * (drv - init)
    assert torch.allclose(relative_keypoints(src, drv, init, adapt_scale=True), expected, atol=1e-5)
    # General case against the formula with independently computed areas.
    src = torch.rand(2, 10, 2) - 0.5
    scale = torch.sqrt(convex_hull_area(src) / convex_hull_area(init)).view(2, 1, 1)
    assert torch.allclose(relative_keypoints(src, drv, init, adapt_scale=True), src + (drv - init) * scale)
    # A time axis on the driving keypoints broadcasts.
    seq = torch.rand(2, 5, 10, 2) - 0.5
    out = relative_keypoints(src, seq, init, adapt_scale=True)
    assert out.shape == seq.shape
    assert torch.allclose(out[:, 3], relative_keypoints(src, seq[:, 3], init, adapt_scale=True))


# --------------------------------------------------------------------------------------------- warping


def test_identity_warp_leaves_image_unchanged() -> None:
    img = torch.rand(2, 3, 17, 23)
    grid = identity_grid(2, 17, 23)
    assert torch.allclose(warp(img, grid), img, atol=1e-5)
    # A low-resolution identity deformation is resized to the features and is still the identity.
    assert torch.allclose(warp(img, identity_grid(2, 5, 7)), img, atol=1e-5)


def test_flow_grid_round_trip_and_pixel_shift() -> None:
    flow = torch.randn(2, 2, 12, 16)
    assert torch.allclose(grid_to_flow(flow_to_grid(flow)), flow, atol=1e-5)
    img = torch.rand(1, 3, 12, 16)
    shift = torch.zeros(1, 2, 12, 16)
    shift[:, 0] = 2.0  # out(p) = img(p + 2 px in x)
    shifted = warp(img, flow_to_grid(shift))
    assert torch.allclose(shifted[..., :-2], img[..., 2:], atol=1e-5)
    assert torch.all(shifted[..., -2:] == 0)  # sampled outside: zero padding


def test_occlusion_blend() -> None:
    warped, ref = torch.rand(2, 4, 8, 8), torch.rand(2, 4, 8, 8)
    occ = torch.rand(2, 1, 8, 8)
    assert torch.allclose(occlusion_blend(warped, ref, occ), warped * occ + (1 - occ) * ref)
    assert torch.allclose(occlusion_blend(warped, None, occ), warped * occ)
    assert occlusion_blend(warped, ref, torch.rand(2, 1, 4, 4)).shape == warped.shape


def test_dense_motion_network() -> None:
    net = DenseMotionNetwork(
        num_keypoints=4,
        num_channels=3,
        block_expansion=8,
        num_blocks=2,
        max_features=32,
        estimate_occlusion=True,
        scale_factor=0.5,
    )
    img = torch.rand(2, 3, 32, 32)
    kp_s, kp_d = torch.rand(2, 4, 2) - 0.5, torch.rand(2, 4, 2) - 0.5
    out = net(img, kp_source=kp_s, kp_driving=kp_d)
    assert out["deformation"].shape == (2, 16, 16, 2)
    assert out["occlusion"].shape == (2, 1, 16, 16)
    assert out["mask"].shape == (2, 5, 16, 16)
    assert out["sparse_deformed"].shape == (2, 5, 3, 16, 16)
    assert torch.allclose(out["mask"].sum(1), torch.ones(2, 16, 16), atol=1e-5)
    assert out["occlusion"].min() >= 0 and out["occlusion"].max() <= 1
    # Equal keypoints: every candidate motion is the identity, so the mixed deformation is too.
    same = net(img, kp_source=kp_s, kp_driving=kp_s)["deformation"]
    assert torch.allclose(same, identity_grid(2, 16, 16), atol=1e-5)
    # Keypoint translation: the keypoint candidate maps the driving keypoint onto the source keypoint.
    motions = net.sparse_motions((16, 16), kp_s, kp_d)
    assert motions.shape == (2, 5, 16, 16, 2)
    assert torch.allclose(
        motions[:, 1:] - make_coordinate_grid(16, 16), (kp_s - kp_d)[:, :, None, None], atol=1e-6
    )
    no_occlusion = DenseMotionNetwork(4, 3, 8, 2, 32, estimate_occlusion=False, scale_factor=1.0)
    out = no_occlusion(img, kp_s, kp_d)
    assert set(out) == {"deformation", "mask", "sparse_deformed", "feature"}
    # The hourglass output the heads read (PECHead's deformable alignment uses it as f^m).
    assert out["feature"].shape == (2, no_occlusion.hourglass.out_filters, 32, 32)


@pytest.mark.parametrize("kernel", [7, 3])
def test_dense_motion_heads_in_one_conv_equal_the_two_modules(kernel: int) -> None:
    """The stacked mask + occlusion convolution gives what FOMM's two separate heads give, gradients included."""
    torch.manual_seed(0)
    net = DenseMotionNetwork(4, 3, 8, 2, 32, estimate_occlusion=True, scale_factor=0.5, head_kernel_size=kernel)
    assert net.mask.kernel_size == (kernel, kernel) and net.occlusion.kernel_size == (kernel, kernel)
    prediction = torch.randn(2, net.hourglass.out_filters, 16, 16, requires_grad=True)
    mask_logits, occlusion_logits = net.heads(prediction)
    assert torch.allclose(mask_logits, net.mask(prediction), atol=1e-5)
    assert torch.allclose(occlusion_logits, net.occlusion(prediction), atol=1e-5)
    (mask_logits.square().sum() + occlusion_logits.sum()).backward()
    fused = [prediction.grad.clone(), net.mask.weight.grad.clone(), net.occlusion.weight.grad.clone()]
    for tensor in (prediction, net.mask.weight, net.occlusion.weight):
        tensor.grad = None
    (net.mask(prediction).square().sum() + net.occlusion(prediction).sum()).backward()
    for got, want in zip(fused, [prediction.grad, net.mask.weight.grad, net.occlusion.weight.grad], strict=True):
        assert torch.allclose(got, want, atol=1e-4)
    with pytest.raises(ValueError, match="head_kernel_size"):
        DenseMotionNetwork(4, 3, 8, 2, 32, head_kernel_size=4)


def test_adam_is_fused_on_cpu_and_takes_the_same_steps() -> None:
    from reenact.nn.optim import adam

    torch.manual_seed(0)
    start = torch.randn(50, 20)
    results = []
    for fused in (True, False):
        weight = nn.Parameter(start.clone())
        optimizer = adam([weight], lr=0.01, betas=(0.5, 0.99), decoupled=True, weight_decay=0.1)
        if not fused:
            optimizer = torch.optim.AdamW([weight], lr=0.01, betas=(0.5, 0.99), weight_decay=0.1)
        else:
            assert optimizer.defaults["fused"] is True and isinstance(optimizer, torch.optim.AdamW)
        for step in range(5):
            optimizer.zero_grad()
            ((weight - step) ** 2).sum().backward()
            optimizer.step()
        results.append(weight.detach())
    assert not torch.equal(results[0], start)
    assert torch.allclose(results[0], results[1], atol=1e-6)
    assert isinstance(adam([nn.Parameter(torch.zeros(3))], lr=0.1), torch.optim.Adam)


# --------------------------------------------------------------------------------------------- TPS


def test_tps_zero_sigma_is_identity() -> None:
    tps = RandomTPS(2, sigma_affine=0.0, sigma_tps=0.0, points_tps=5)
    img = torch.rand(2, 3, 16, 20)
    assert torch.allclose(tps.transform_frame(img), img, atol=1e-5)
    coords = torch.rand(2, 7, 2) * 2 - 1
    assert torch.allclose(tps.warp_coordinates(coords), coords, atol=1e-6)
    assert torch.allclose(tps.jacobian(coords), torch.eye(2).expand(2, 7, 2, 2), atol=1e-5)


def test_tps_coordinates_agree_with_frame_on_a_dot() -> None:
    gen = torch.Generator().manual_seed(3)
    tps = RandomTPS(2, sigma_affine=0.05, sigma_tps=0.005, points_tps=5, generator=gen)
    assert not torch.allclose(tps.warp_coordinates(torch.zeros(1, 1, 2)), torch.zeros(2, 1, 2))
    dot = torch.tensor([[[0.2, -0.15]], [[-0.3, 0.25]]])  # [B, 1, 2]
    frame = keypoints_to_heatmaps(dot, (96, 96), variance=0.0005)  # [B, 1, 96, 96] rendered dot
    transformed = tps.transform_frame(frame)  # transformed(q) = frame(T(q))
    q = heatmap_to_keypoints(transformed)  # where the dot landed
    assert torch.allclose(tps.warp_coordinates(q), dot, atol=5e-3)
    assert torch.allclose(equivariance_loss(dot, q, tps), torch.tensor(0.0), atol=5e-3)


# --------------------------------------------------------------------------------------------- encoding


def test_positional_encoding_matches_formula() -> None:
    enc = PositionalEncoding(num_octaves=3, start_octave=-1)
    coords = torch.rand(2, 5, 4) * 2 - 1
    out = enc(coords)
    assert out.shape == (2, 5, 2 * 4 * 3) and enc.output_dim(4) == 24
    n, d_count = 3, 4
    for d in range(d_count):
        for i in range(n):
            freq = 2.0 ** (i - 1) * math.pi
            assert torch.allclose(out[..., d * n + i], torch.sin(freq * coords[..., d]), atol=1e-6)
            assert torch.allclose(
                out[..., d_count * n + d * n + i], torch.cos(freq * coords[..., d]), atol=1e-6
            )
    # FSRT sizes: pixels, 16 octaves from -1 on (x, y) -> 64; 10 flattened keypoints, 4 octaves -> 160.
    assert PositionalEncoding(16, -1)(torch.rand(1, 7, 2)).shape[-1] == 64
    assert PositionalEncoding(4, -1)(torch.rand(3, 10, 2).flatten(-2)).shape[-1] == 160


# --------------------------------------------------------------------------------------------- discriminators


def test_patch_discriminator_shapes_and_conditioning() -> None:
    disc = PatchDiscriminator(num_channels=3, block_expansion=8, num_blocks=4, max_features=32)
    feats, pred = disc(torch.rand(2, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [16, 32, 32, 32]
    assert pred.shape == (2, 1, 2, 2)  # FOMM's unpadded 4x4 convs: 64 -> 61/30 -> 27/13 -> 10/5 -> 2
    cond = PatchDiscriminator(3, 8, 3, 32, extra_channels=2, num_keypoints=5, padding=1)
    feats, pred = cond(
        torch.rand(2, 3, 32, 32), condition=torch.rand(2, 2, 16, 16), keypoints=torch.rand(2, 5, 2)
    )
    assert cond.down_blocks[0].conv.in_channels == 3 + 2 + 5
    assert pred.shape[:2] == (2, 1)
    with pytest.raises(ValueError):
        cond(torch.rand(2, 3, 32, 32))


def test_spectral_norm_option() -> None:
    plain = PatchDiscriminator(3, 8, 2, 16)
    sn = PatchDiscriminator(3, 8, 2, 16, spectral_norm=True)
    assert not hasattr(plain.down_blocks[0].conv, "weight_u")
    assert all(hasattr(b.conv, "weight_u") and hasattr(b.conv, "weight_orig") for b in sn.down_blocks)
    assert hasattr(sn.conv, "weight_u")
    assert sn(torch.rand(1, 3, 32, 32))[1].shape[1] == 1


def test_multiscale_discriminator() -> None:
    disc = MultiScaleDiscriminator(
        scales=(1, 0.5), block_expansion=8, num_blocks=3, max_features=32, padding=1
    )
    out = disc(torch.rand(2, 3, 32, 32))
    assert list(out) == [1.0, 0.5]
    assert out[1.0][1].shape[-1] > out[0.5][1].shape[-1]
    keys = set(disc.state_dict())
    assert any(k.startswith("discs.1.down_blocks.0.conv") for k in keys)
    assert any(k.startswith("discs.0-5.") for k in keys)
    assert not any(k.startswith("downs.") for k in keys)  # fixed blur kernels are not checkpointed


# --------------------------------------------------------------------------------------------- losses

REAL = torch.tensor([0.5, 2.0, -1.0])
FAKE = torch.tensor([-0.5, 0.3, -2.0])


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_gan_losses_against_hand_computation() -> None:
    # hinge: D = mean(relu(1 - r)) + mean(relu(1 + f)) = mean(.5, 0, 2) + mean(.5, 1.3, 0)
    assert math.isclose(float(hinge_d_loss(REAL, FAKE)), 2.5 / 3 + 1.8 / 3, rel_tol=1e-6)
    assert math.isclose(float(hinge_g_loss(FAKE)), 2.2 / 3, rel_tol=1e-6)
    # LSGAN: D = mean((1 - r)^2) + mean(f^2) = mean(.25, 1, 4) + mean(.25, .09, 4)
    assert math.isclose(float(lsgan_d_loss(REAL, FAKE)), 5.25 / 3 + 4.34 / 3, rel_tol=1e-6)
    assert math.isclose(float(lsgan_g_loss(FAKE)), (2.25 + 0.49 + 9.0) / 3, rel_tol=1e-6)
    d_ns = sum(_softplus(-r) for r in REAL.tolist()) / 3 + sum(_softplus(f) for f in FAKE.tolist()) / 3
    g_ns = sum(_softplus(-f) for f in FAKE.tolist()) / 3
    assert math.isclose(float(nonsaturating_d_loss(REAL, FAKE)), d_ns, rel_tol=1e-6)
    assert math.isclose(float(nonsaturating_g_loss(FAKE)), g_ns, rel_tol=1e-6)
    # Several scales are summed; losses by name dispatch to the same functions.
    assert torch.isclose(hinge_d_loss([REAL, REAL], [FAKE, FAKE]), 2 * hinge_d_loss(REAL, FAKE))
    assert torch.isclose(generator_loss("lsgan", FAKE), lsgan_g_loss(FAKE))
    assert torch.isclose(discriminator_loss("nonsaturating", REAL, FAKE), nonsaturating_d_loss(REAL, FAKE))


def test_feature_matching_and_r1() -> None:
    real = [torch.zeros(2, 3), torch.ones(4)]
    fake = [torch.full((2, 3), 0.5), torch.zeros(4)]
    assert math.isclose(float(feature_matching_loss(real, fake)), 0.5 + 1.0)
    assert math.isclose(float(feature_matching_loss(real, fake, weights=[2.0, 0.1])), 1.0 + 0.1, rel_tol=1e-6)
    assert math.isclose(float(feature_matching_loss([real, real], [fake, fake])), 3.0)
    fake_req = [t.clone().requires_grad_(True) for t in fake]
    real_req = [t.clone().requires_grad_(True) for t in real]
    feature_matching_loss(real_req, fake_req).backward()
    assert real_req[0].grad is None and fake_req[0].grad is not None  # real features are targets
    w = torch.tensor([1.0, -2.0, 3.0])
    x = torch.rand(4, 3, requires_grad=True)
    logits = (x * w).sum(1)  # d logits_b / d x_b = w
    assert torch.isclose(r1_penalty(logits, x), w.pow(2).sum())


# --------------------------------------------------------------------------------------------- keypoint warp


def small_generator() -> KeypointWarpGenerator:
    return KeypointWarpGenerator(
        num_keypoints=5,
        block_expansion=8,
        max_features=32,
        num_bottleneck_blocks=1,
        kp_block_expansion=8,
        kp_num_blocks=2,
        dense_motion_block_expansion=8,
        dense_motion_num_blocks=2,
    )


def test_keypoint_warp_default_size() -> None:
    n_params = sum(p.numel() for p in KeypointWarpGenerator().parameters())
    assert 0.5e6 <= n_params <= 2e6, n_params


def test_keypoint_warp_forward_shapes_and_range() -> None:
    gen = KeypointWarpGenerator()
    source, driving = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    out = gen(source, driving)
    assert out["generated"].shape == (2, 3, 64, 64)
    assert out["generated"].min() >= 0 and out["generated"].max() <= 1
    assert out["keypoints_source"].shape == out["keypoints_driving"].shape == (2, 10, 2)
    assert out["deformation"].shape == (2, 32, 32, 2)
    assert out["occlusion"].shape == (2, 1, 32, 32)


def test_keypoint_warp_gradients_reach_every_parameter_group() -> None:
    gen = small_generator()
    out = gen(smooth_image(2), smooth_image(2))
    F.l1_loss(out["generated"], smooth_image(2)).backward()
    for name, param in gen.named_parameters():
        assert param.grad is not None, name
    for group, module in gen.named_children():
        norm = sum(float(p.grad.abs().sum()) for p in module.parameters())
        assert norm > 0, group
    kp_norm = sum(float(p.grad.abs().sum()) for p in gen.keypoint_detector.kp.parameters())
    assert kp_norm > 0  # the unsupervised keypoints learn from reconstruction


def test_keypoint_warp_adam_steps_lower_l1() -> None:
    gen = small_generator()
    source = smooth_image(2, h=32, w=32)
    driving = torch.roll(source, shifts=3, dims=-1)
    opt = torch.optim.Adam(gen.parameters(), lr=2e-3)
    losses = []
    for _ in range(15):
        loss = F.l1_loss(gen(source, driving)["generated"], driving)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_keypoint_warp_animate() -> None:
    gen = small_generator().eval()
    source = smooth_image(2)
    driving = torch.stack([smooth_image(2) for _ in range(3)], dim=1)
    with torch.no_grad():
        video = gen.animate(source, driving)
        assert video.shape == (2, 3, 3, 32, 32)
        assert torch.allclose(video[:, 1], gen(source, driving[:, 1])["generated"], atol=1e-5)
        # Relative mode with a static driving video equal to the source reproduces the source motion-free.
        still = source.unsqueeze(1).expand(2, 2, 3, 32, 32)
        rel = gen.animate(source, still, relative=True, adapt_scale=True)
        assert torch.allclose(rel[:, 0], gen(source, source)["generated"], atol=1e-5)
        rel_init = gen.animate(source, driving, relative=True, driving_initial=driving[:, 0])
        assert torch.allclose(rel_init, gen.animate(source, driving, relative=True), atol=1e-6)
    with pytest.raises(ValueError):
        gen.animate(source, driving[:, 0])


def _upfirdn2d_explicit(x: torch.Tensor, kernel: torch.Tensor, up: int, down: int,
                        pad: tuple[int, int]) -> torch.Tensor:
    """StyleGAN2's upfirdn2d spelled out step by step: zero insertion, padding (or cropping), FIR, subsampling."""
    b, c, h, w = x.shape
    out = x
    if up > 1:
        out = F.pad(out.view(b, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).view(b, c, h * up, w * up)
    p0, p1 = pad
    out = F.pad(out, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    out = out[:, :, max(-p0, 0):out.shape[2] - max(-p1, 0), max(-p0, 0):out.shape[3] - max(-p1, 0)]
    out = F.conv2d(out, torch.flip(kernel, [0, 1]).expand(c, 1, *kernel.shape), groups=c)
    return out[:, :, ::down, ::down]


@pytest.mark.parametrize(("up", "down", "pad"), [(1, 1, (1, 1)), (1, 2, (2, 2)), (1, 1, (2, 1)), (2, 1, (2, 1)),
                                                 (2, 1, (1, 1)), (1, 1, (-1, 2)), (2, 1, (0, -1))])
def test_upfirdn2d_fast_paths_equal_the_explicit_steps(up: int, down: int, pad: tuple[int, int]) -> None:
    """The padding-free and single-buffer paths of ``upfirdn2d`` (LIA's blur and upsampling) give exactly the values
    of the step-by-step filter, so released LIA weights keep producing the official outputs."""
    from reenact.nn.stylegan2 import make_kernel, upfirdn2d

    x = torch.randn(2, 5, 9, 9, generator=torch.Generator().manual_seed(0))
    kernel = make_kernel((1, 3, 3, 1)) * up**2
    assert torch.equal(upfirdn2d(x, kernel, up=up, down=down, pad=pad), _upfirdn2d_explicit(x, kernel, up, down, pad))


def test_fused_leaky_relu_without_autograd_equals_with_it() -> None:
    """The in-place activation used at inference returns the training path's values and leaves its input intact."""
    from reenact.nn.stylegan2 import fused_leaky_relu

    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    bias = torch.randn(1, 4, 1, 1)
    expected = fused_leaky_relu(x, bias)
    expected.sum().backward()  # the training path still has a gradient
    assert x.grad is not None and x.grad.abs().sum() > 0
    with torch.no_grad():
        before = x.detach().clone()
        assert torch.equal(fused_leaky_relu(x, bias), expected.detach())
        assert torch.equal(x, before)


def test_batchnorm_folded_at_inference_equals_the_plain_blocks() -> None:
    """FOMM blocks at inference fold BatchNorm's running statistics into the convolution: same values (to float
    rounding) as conv -> norm -> ReLU; in training mode the blocks still normalise with batch statistics."""
    from reenact.nn import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d

    torch.manual_seed(0)
    x = torch.randn(2, 6, 8, 8)
    for block in (SameBlock2d(6, 5), DownBlock2d(6, 5), UpBlock2d(6, 5), ResBlock2d(6)):
        for norm in (m for m in block.modules() if isinstance(m, nn.BatchNorm2d)):
            norm.running_mean.uniform_(-1, 1)
            norm.running_var.uniform_(0.5, 2)
            nn.init.uniform_(norm.weight, 0.5, 1.5)
            nn.init.uniform_(norm.bias, -0.5, 0.5)
        block.eval()
        with torch.no_grad():
            folded = block(x)
        with torch.enable_grad():
            plain = block(x)  # autograd on: the unfolded path
        torch.testing.assert_close(folded, plain.detach(), atol=1e-5, rtol=1e-5)
        block.train()
        trained = block(x.requires_grad_())
        trained.square().mean().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0
        assert not torch.allclose(trained.detach(), folded, atol=1e-3)  # batch statistics, not running ones
        x = x.detach()
