"""LIA: official layout and parameter count, the released-checkpoint loader, generator semantics, losses,
Lightning training/checkpointing and a 2-process DDP fit."""

from __future__ import annotations

import argparse
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
import torch.nn.functional as F
from torch import nn

import reenact.models
from reenact.data.video import write_video
from reenact.models.lia.lightning_model import LIA
from reenact.models.lia.losses import frozen_logits
from reenact.models.lia.official import (
    OFFICIAL_CONFIG,
    OFFICIAL_PARAMETERS,
    load_official,
    load_official_discriminator,
    save_as_reenact_checkpoint,
)
from reenact.models.lia.torch_model import LIAGenerator, StyleGAN2Discriminator
from reenact.nn.losses import VGG19Perceptual

LAYOUTS = Path(__file__).resolve().parent / "data" / "official_state_dict_layouts.json"
# Small sizes for CPU tests (the tiny preset is 1.5 M parameters; this is ~0.2 M).
SMALL = {"image_size": 32, "generator": {"style_dim": 64, "motion_dim": 8, "channel_base": 256, "channel_max": 64}}


def _official_layout() -> dict[str, list[int]]:
    if not LAYOUTS.is_file():
        pytest.skip(f"{LAYOUTS} not available")
    return json.loads(LAYOUTS.read_text())["lia"]["generator"]


@pytest.fixture(scope="module")
def paper_generator_meta() -> LIAGenerator:
    with torch.device("meta"):
        return LIAGenerator(**OFFICIAL_CONFIG)


def _smooth_batch(batch: int = 2, size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    smooth = F.interpolate(torch.rand(batch, 3, 6, 6, generator=generator), size=size, mode="bicubic",
                           align_corners=False).clamp(0, 1)
    return {"source": smooth[:, None], "driving": smooth.roll(shifts=3, dims=-1)[:, None]}


# ------------------------------------------------------------------------------------------- layout
def test_paper_generator_matches_official_layout(paper_generator_meta: LIAGenerator) -> None:
    reference = _official_layout()
    ours = {key: list(value.shape) for key, value in paper_generator_meta.state_dict().items()}
    assert list(ours) == list(reference)  # every key, in the official order
    assert ours == reference  # every shape
    parameters = sum(p.numel() for p in paper_generator_meta.parameters())
    assert parameters == OFFICIAL_PARAMETERS and round(parameters / 1e6, 2) == 45.12
    assert round(sum(p.numel() for p in paper_generator_meta.enc.parameters()) / 1e6, 2) == 22.70
    assert round(sum(p.numel() for p in paper_generator_meta.dec.parameters()) / 1e6, 2) == 22.42


def test_paper_preset_builds_the_official_generator() -> None:
    # The paper preset's VGG19 term needs ImageNet weights; the generator itself does not.
    with torch.device("meta"):
        module = reenact.models.create_model("lia", preset="paper", perceptual_weight=0.0)
    assert sum(p.numel() for p in module.generator.parameters()) == OFFICIAL_PARAMETERS
    assert module.generator_kwargs() == OFFICIAL_CONFIG


def test_load_official_checkpoint_with_random_tensors(tmp_path: Path) -> None:
    reference = _official_layout()
    generator = torch.Generator().manual_seed(0)
    gen = {key: torch.randn(shape, generator=generator) for key, shape in reference.items()}
    discriminator_state = StyleGAN2Discriminator(**{k: OFFICIAL_CONFIG[k] for k in ("channel_base", "channel_max")},
                                                 size=OFFICIAL_CONFIG["size"]).state_dict()
    path = tmp_path / "vox.pt"
    # The released file's structure: the generator nested under "gen", plus "dis", optimisers and argparse args.
    torch.save({"gen": gen, "dis": discriminator_state, "g_optim": {"state": {}, "param_groups": []},
                "args": argparse.Namespace(size=256, latent_dim_style=512, latent_dim_motion=20)}, path)
    loaded = load_official(path)  # strict: raises on any missing/unexpected key or shape mismatch
    state = loaded.state_dict()
    assert set(state) == set(reference)
    for key in ("enc.net_app.convs.0.0.weight", "dec.direction.weight", "dec.to_flows.5.conv.weight",
                "enc.fc.4.bias"):
        assert torch.equal(state[key], gen[key])
    assert load_official_discriminator(path).final_linear[1].weight.shape == (1, 512)
    direction = gen["dec.direction.weight"].clone()
    del gen, state, loaded

    converted = save_as_reenact_checkpoint(path, tmp_path / "lia_official.ckpt", perceptual_weight=0.0)
    module = reenact.models.load_from_checkpoint(converted)
    assert isinstance(module, LIA) and module.hparams.image_size == 256
    assert torch.equal(module.generator.dec.direction.weight, direction)


def test_load_official_rejects_a_wrong_layout(tmp_path: Path) -> None:
    path = tmp_path / "broken.pt"
    torch.save({"gen": {"enc.fc.0.weight": torch.zeros(512, 512)}}, path)
    with pytest.raises(RuntimeError, match="Missing key"):
        load_official(path)
    torch.save({"something": {}}, path)
    with pytest.raises(KeyError, match="'gen'"):
        load_official(path)


# ---------------------------------------------------------------------------------------- semantics
def test_directions_are_orthonormal_and_linear() -> None:
    torch.manual_seed(0)
    generator = LIAGenerator(size=32, style_dim=64, motion_dim=8, channel_base=256, channel_max=64)
    q = generator.dec.direction.basis()
    torch.testing.assert_close(q.T @ q, torch.eye(8), atol=1e-5, rtol=0)
    alpha = torch.randn(3, 8)
    torch.testing.assert_close(generator.directions(alpha), (alpha[:, :, None] * q.T[None]).sum(1))


def test_generator_absolute_and_relative_modes() -> None:
    torch.manual_seed(0)
    generator = LIAGenerator(size=32, style_dim=64, motion_dim=8, channel_base=256, channel_max=64).eval()
    source, driving = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        absolute = generator(source, driving)
        assert absolute.shape == (2, 3, 32, 32)
        # Relative with the driving frame as its own start: w_a + D a_src, i.e. the source driven by itself.
        relative = generator(source, driving, driving_start=driving)
        torch.testing.assert_close(relative, generator(source, source), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(absolute, relative)
        # Deterministic (LIA injects no noise) and the unused official layers stay frozen.
        torch.testing.assert_close(generator(source, driving), absolute)
    assert not any(p.requires_grad for p in generator.dec.to_rgb1.parameters())


def test_module_animate_shapes_relative_and_chunking() -> None:
    torch.manual_seed(0)
    module = LIA(**SMALL).configure_evaluation(chunk=2).eval()
    source, driving = torch.rand(1, 1, 3, 32, 32), torch.rand(1, 5, 3, 32, 32)
    with torch.no_grad():
        absolute = module.animate(source, driving)
        relative = module.animate(source, driving, relative=True)
        assert absolute.shape == relative.shape == (1, 5, 3, 32, 32)
        assert absolute.min() >= 0 and absolute.max() <= 1
        # Relative: the first driving frame maps to the source's own motion.
        torch.testing.assert_close(relative[:, 0], module.animate(source, source)[:, 0], atol=1e-5, rtol=1e-5)
        for mode in (False, True):
            torch.testing.assert_close(module.generate_video(source, driving, mode),
                                       module.animate(source, driving, relative=mode), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------- losses
def test_generator_adversarial_term_leaves_discriminator_without_gradient() -> None:
    torch.manual_seed(0)
    discriminator = StyleGAN2Discriminator(size=32, channel_base=256, channel_max=64)
    image = torch.rand(3, 3, 32, 32, requires_grad=True)  # batch 3: the stddev group falls back to 3
    frozen_logits(discriminator, image).sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert all(p.grad is None for p in discriminator.parameters())
    torch.testing.assert_close(frozen_logits(discriminator, image), discriminator(image))


def test_lia_losses_fall_in_a_few_steps() -> None:
    torch.manual_seed(0)
    module = LIA(**SMALL, lr=2e-3, gan_weight=0.1, r1_weight=1.0)
    batch = _smooth_batch()
    optimizer_g, optimizer_d = module.configure_optimizers()
    history = []
    for step in range(12):
        losses = module.losses(batch, r1=step % 4 == 0)
        optimizer_g.zero_grad()
        optimizer_d.zero_grad()
        (losses["g_total"] + losses["d_total"]).backward()
        optimizer_g.step()
        optimizer_d.step()
        history.append({k: v.item() for k, v in losses.items()})
    assert set(history[0]) >= {"l1", "gan_g", "g_total", "gan_d", "r1", "d_total"}
    assert np.mean([h["l1"] for h in history[-3:]]) < 0.8 * history[0]["l1"]
    assert np.mean([h["gan_d"] for h in history[-3:]]) < history[0]["gan_d"]


def test_perceptual_term_with_an_explicit_test_backbone() -> None:
    torch.manual_seed(0)
    module = LIA(**SMALL)
    # A random 2-layer network, clearly NOT VGG19: the real weights are only ever loaded via reenact.weights.
    test_only_random_backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    module.perceptual = VGG19Perceptual(layers=(1,), weights=(10.0,), scales=(1.0, 0.5),
                                        backbone=test_only_random_backbone)
    module.hparams.perceptual_weight = 1.0
    losses = module.losses(_smooth_batch())
    assert losses["perceptual"] > 0
    torch.testing.assert_close(losses["g_total"], losses["l1"] + losses["perceptual"] + losses["gan_g"])


# --------------------------------------------------------------------------------- Lightning training
def test_trainer_fit_and_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = LIA(**SMALL)
    batch = _smooth_batch(batch=4)
    loader = torch.utils.data.DataLoader([{k: v[i] for k, v in batch.items()} for i in range(4)], batch_size=2)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    trainer = L.Trainer(max_steps=4, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
                        default_root_dir=tmp_path)
    trainer.fit(module, train_dataloaders=loader)
    assert trainer.global_step == 4  # 2 batches x (generator + discriminator step)
    after = module.state_dict()
    assert not torch.equal(before["generator.enc.fc.0.weight"], after["generator.enc.fc.0.weight"])
    assert not torch.equal(before["discriminator.final_linear.1.weight"], after["discriminator.final_linear.1.weight"])
    # The layout-only weights never train.
    assert torch.equal(before["generator.dec.to_rgb1.conv.0.weight"], after["generator.dec.to_rgb1.conv.0.weight"])
    path = tmp_path / "lia.ckpt"
    trainer.save_checkpoint(path)
    loaded = reenact.models.load_from_checkpoint(path).eval()
    module.eval()
    source, driving = torch.rand(1, 1, 3, 32, 32), torch.rand(1, 3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.animate(source, driving), module.animate(source, driving))


def _write_videos(root: Path, videos: int = 6, frames: int = 6, size: int = 64) -> Path:
    rng = np.random.default_rng(0)
    for index in range(videos):
        split = "train" if index < videos - 2 else "test"
        (root / split).mkdir(parents=True, exist_ok=True)
        base = rng.integers(30, 220, size=3)
        clip = np.zeros((frames, size, size, 3), np.uint8)
        for t in range(frames):
            clip[t] = base
            y = 16 + 3 * t
            clip[t, y:y + 24, 20 + index:44 + index] = 255 - base  # a moving block
        write_video(root / split / f"id{index % 3}#clip{index}.mp4", clip)
    return root


@pytest.mark.slow
def test_ddp_fit_two_processes(tmp_path: Path) -> None:
    root = _write_videos(tmp_path / "data")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    args = ["fit", "--model", "lia", "--data.root", str(root), "--trainer.accelerator", "cpu",
            "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.max_steps", "4",
            "--trainer.val_check_interval", "2", "--data.batch_size", "2", "--data.repeats", "2",
            "--data.max_frames_per_video", "4", "--trainer.log_every_n_steps", "1"]
    run = subprocess.run([sys.executable, "-m", "reenact", *args], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    runs = tmp_path / "runs" / "lia"
    checkpoint = next(runs.rglob("last.ckpt"))
    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert payload["reenact"]["model"] == "lia" and payload["global_step"] == 4
    assert "train/g_total" in next(runs.rglob("metrics.csv")).read_text()
    model = reenact.models.load_from_checkpoint(checkpoint).eval()
    with torch.no_grad():
        out = model.animate(torch.rand(1, 1, 3, 64, 64), torch.rand(1, 2, 3, 64, 64))
    assert out.shape == (1, 2, 3, 64, 64) and math.isfinite(out.sum().item())


def test_rounding_order_follows_the_official_code() -> None:
    """The three places where the official LIA's order of float operations differs from the obvious one are
    computed its way (bit for bit): the float64 identity grid cast to float32, the direction sum over
    ``diag(alpha) Q^T``, and the relative latent ``w_a + (D a_t - D a_0) + D a_s``."""
    import numpy as np

    from reenact.models.lia.torch_model import Direction, identity_grid

    xs = np.linspace(-1, 1, 37)
    official_grid = torch.tensor(np.stack(np.meshgrid(xs, xs), 2)).float()
    assert torch.equal(identity_grid(37, 1, torch.device("cpu"), torch.float32)[0], official_grid)

    torch.manual_seed(0)
    direction = Direction(64, 20)
    alpha = torch.randn(3, 20)
    q, _ = torch.linalg.qr(direction.weight + 1e-8)
    assert torch.equal(direction(alpha), torch.sum(torch.matmul(torch.diag_embed(alpha), q.T), dim=1))

    generator = LIAGenerator(size=32, style_dim=64, motion_dim=20, channel_base=256, channel_max=64)
    latents = []
    generator.dec.forward = lambda latent, feats: latents.append(latent) or latent  # type: ignore[method-assign]
    w_a, a_t, a_0, a_s = torch.randn(2, 64), torch.randn(2, 20), torch.randn(2, 20), torch.randn(2, 20)
    generator.synthesize(w_a, [], a_t, a_0, a_s)
    d = generator.directions
    assert torch.equal(latents[0], w_a + (d(a_t) - d(a_0)) + d(a_s))


def test_flat_hyper_parameters_of_older_checkpoints_move_into_the_generator_section() -> None:
    """LIA checkpoints written before ``generator`` existed store its fields flat; LPMM reads such backbones too."""
    flat = {"image_size": 32, "style_dim": 64, "motion_dim": 8, "channel_base": 256, "channel_max": 64, "lr": 2e-3}
    upgraded = LIA.upgrade_hyper_parameters(flat)
    assert upgraded == {"image_size": 32, "lr": 2e-3, "generator": SMALL["generator"]}
    module = LIA(**upgraded)
    assert module.generator_kwargs() == {"size": 32, **SMALL["generator"]}
