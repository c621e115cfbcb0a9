"""LPMM: the landmark PCA (Eq. 1), LP-regressor and LP-adaptor training (Eq. 2-4), frozen parts, the control
API (Sec. 4.4), the staged fit with its backbone checkpoint, checkpoint round trip and a 2-process DDP fit.

Data are "dot faces" made here: 68 landmarks of a face-like template under a random rotation, scale,
translation, mouth opening and blink, rendered as Gaussian dots; images and landmarks therefore agree, so the
regressor has something to learn. Nothing depends on the synthetic dataset generator.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

import reenact
import reenact.models
from reenact.cli import main
from reenact.data.video import write_video
from reenact.models.lia.lightning_model import LIA
from reenact.models.lpmm import control
from reenact.models.lpmm.adaptor import LIABackbone, PoseLatentBackbone, pose_regularisation
from reenact.models.lpmm.lightning_model import LPMM
from reenact.models.lpmm.pca import LandmarkPCA, align_landmarks

# 32 px and a small LIA backbone keep CPU tests fast (the tiny preset is 64 px with a 1.5 M backbone).
SIZE = 32
BACKBONE = {"size": SIZE, "style_dim": 64, "motion_dim": 20, "channel_base": 256, "channel_max": 64}


# ------------------------------------------------------------------------------------------- dot faces
def _template(seed: int = 7) -> np.ndarray:
    """68 points in [-0.3, 0.3]^2 with the iBUG outer eye corners (36, 45) where eyes are."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(-0.3, 0.3, size=(68, 2))
    points[36], points[45] = (-0.2, -0.1), (0.2, -0.1)
    return points


def dot_faces(count: int, size: int = SIZE, seed: int = 0, colour: tuple[int, int, int] | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """``(frames uint8 [N, S, S, 3], landmarks float32 [N, 68, 2] in pixels)``."""
    rng = np.random.default_rng(seed)
    template = _template()
    frames = np.zeros((count, size, size, 3), np.uint8)
    landmarks = np.zeros((count, 68, 2), np.float32)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    background = np.array(colour if colour is not None else rng.integers(0, 80, size=3), np.float32)
    for n in range(count):
        angle, scale = rng.uniform(-0.35, 0.35), rng.uniform(0.8, 1.15)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        shape = template.copy()
        shape[48:68, 1] += rng.uniform(0, 0.08)  # mouth opening
        shape[[37, 38, 43, 44], 1] += rng.uniform(0, 0.04)  # blink
        points = (shape @ rotation.T) * scale * size + (size - 1) / 2 + rng.uniform(-2, 2, size=2)
        landmarks[n] = points
        distance = (xs[None] - points[:, 0, None, None]) ** 2 + (ys[None] - points[:, 1, None, None]) ** 2
        dots = np.exp(-distance / 1.0).sum(0).clip(0, 1)
        frames[n] = (background + dots[..., None] * (255 - background)).clip(0, 255).astype(np.uint8)
    return frames, landmarks


def _tensor_batch(count: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    frames, landmarks = dot_faces(2 * count, seed=seed)
    images = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    points = torch.from_numpy(landmarks)
    return {"source": images[:count, None], "driving": images[count:, None],
            "source_landmarks": points[:count, None], "driving_landmarks": points[count:, None]}


def write_dot_dataset(root: Path, videos: int = 6, frames: int = 8) -> Path:
    """FOMM layout with annotations (``landmarks``), 4 train + 2 test videos of 3 identities."""
    for index in range(videos):
        split = "train" if index < videos - 2 else "test"
        name = f"id{index % 3}#clip{index}"
        clip, landmarks = dot_faces(frames, size=SIZE, seed=100 + index, colour=(20 * (index % 3), 40, 60))
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
        write_video(root / split / f"{name}.mp4", clip)
        np.savez(root / "annotations" / split / f"{name}.npz", landmarks=landmarks)
    return root


def _lia_checkpoint(path: Path, seed: int = 0) -> Path:
    """A reenact LIA checkpoint (random weights) with the small backbone sizes: what `reenact fit --model lia`
    writes, minus the training state."""
    torch.manual_seed(seed)
    lia = LIA(image_size=SIZE, generator={k: v for k, v in BACKBONE.items() if k != "size"})
    torch.save({"state_dict": lia.state_dict(), "hyper_parameters": dict(lia.hparams),
                "reenact": {"model": "lia", "version": reenact.__version__}}, path)
    return path


def _lpmm(**overrides: object) -> LPMM:
    # MobileNetV2 at width 0.5 keeps CPU tests fast; the presets use the paper's mobilenetv2_100.
    arguments: dict[str, object] = {"image_size": SIZE, "backbone_config": BACKBONE, "num_params": 20,
                                    "adaptor_hidden": 64, "regressor_arch": "mobilenetv2_050"}
    arguments.update(overrides)
    return LPMM(**arguments)


@pytest.fixture(scope="module")
def fitted_lpmm() -> LPMM:
    """An LPMM with a fitted basis, a prepared adaptor (identity + v_bar) and a non-trivial adaptor."""
    torch.manual_seed(0)
    model = _lpmm()
    _, landmarks = dot_faces(200, seed=1)
    model.fit_basis(torch.from_numpy(landmarks))
    batch = _tensor_batch(4, seed=2)
    model.prepare_adaptor(batch["source"][0], torch.cat([batch["source"][:, 0], batch["driving"][:, 0]]))
    with torch.no_grad():
        # Non-zero output layers (both start at zero): parameters and residuals then depend on the image.
        torch.nn.init.normal_(model.regressor.net.get_classifier().weight, std=0.05)
        torch.nn.init.normal_(model.adaptor.mlp[-1].weight, std=0.05)
    return model.eval()


# ------------------------------------------------------------------------------------------------ PCA
def test_pca_error_falls_with_k_and_is_exact_at_136() -> None:
    _, landmarks = dot_faces(300, seed=3)
    points = torch.from_numpy(landmarks).double()
    points = points + 0.3 * torch.randn(points.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    pca = LandmarkPCA(40).fit_landmarks(points, SIZE)
    errors = [pca.reconstruction_nme(points, SIZE, k).item() for k in (5, 10, 20, 40, 136)]
    assert all(errors[i] > errors[i + 1] for i in range(4)), errors
    assert errors[4] < 1e-6 and errors[3] > 1e-3  # exact at 136 up to the float32 basis
    # Eq. 1 at k = 136 restores the aligned landmarks exactly (up to float error).
    aligned = align_landmarks(points, SIZE)
    torch.testing.assert_close(pca.reconstruct(pca.project(aligned, 136)), aligned.to(pca.mean.dtype).double(),
                               atol=1e-6, rtol=0)
    # No translation component: shifted landmarks have the same parameters.
    torch.testing.assert_close(pca.project(align_landmarks(points + 5.0, SIZE)), pca.project(aligned))
    assert pca.variance[:-2].min() > 0 and pca.variance[-2:].max() < 1e-12  # translation directions come last
    assert pca.std.shape == (40,) and bool(pca.fitted) and int(pca.num_samples) == 300


def test_pca_basis_is_stored_with_the_model_and_deterministic() -> None:
    _, landmarks = dot_faces(50, seed=4)
    first = LandmarkPCA(10).fit_landmarks(torch.from_numpy(landmarks), SIZE)
    second = LandmarkPCA(10)
    second.load_state_dict(first.state_dict())
    assert second.fingerprint() == first.fingerprint()
    refit = LandmarkPCA(10).fit_landmarks(torch.from_numpy(landmarks), SIZE)
    torch.testing.assert_close(refit.components, first.components)
    assert set(first.state_dict()) == {"mean", "components", "variance", "fitted", "num_samples"}


# ------------------------------------------------------------------------------------ regressor/adaptor
def test_regressor_training_reduces_landmark_loss() -> None:
    torch.manual_seed(0)
    model = _lpmm()
    batch = _tensor_batch(8, seed=5)
    images = torch.cat([batch["source"][:, 0], batch["driving"][:, 0]])
    landmarks = torch.cat([batch["source_landmarks"][:, 0], batch["driving_landmarks"][:, 0]])
    model.fit_basis(landmarks)
    optimizer = torch.optim.Adam(model.regressor.parameters(), lr=1e-3)
    model.regressor.train()
    history = []
    for _ in range(10):
        losses = model.regressor_losses(images, landmarks)
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
        history.append(losses["regressor_l1"].item())
    assert np.mean(history[-3:]) < 0.7 * history[0], history
    assert losses["nme"] > 0


def test_adaptor_training_reduces_loss_and_frozen_parts_get_no_gradient(fitted_lpmm: LPMM) -> None:
    model = _lpmm()
    model.load_state_dict(fitted_lpmm.state_dict())
    model.train()
    frozen = {name: tensor.clone() for name, tensor in model.state_dict().items()
              if name.startswith(("backbone.", "regressor.", "pca."))}
    batch = _tensor_batch(2, seed=6)
    images = torch.cat([batch["source"][:, 0], batch["driving"][:, 0]])
    model.regressor.eval()  # as in the adaptor stage
    optimizer = torch.optim.Adam(model.adaptor.parameters(), lr=1e-3)
    history = []
    for _ in range(8):
        losses = model.adaptor_losses(images)
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
        history.append(losses["rgb"].item())
        assert all(p.grad is None for p in model.backbone.parameters())
        assert all(p.grad is None for p in model.regressor.parameters())
    assert np.mean(history[-3:]) < 0.95 * history[0], history
    for name, tensor in model.state_dict().items():
        if name in frozen:
            assert torch.equal(tensor, frozen[name]), name
    assert not model.backbone.training  # the backbone stays in eval mode under model.train()


def test_pose_regularisation_term(fitted_lpmm: LPMM) -> None:
    model = _lpmm()
    model.load_state_dict(fitted_lpmm.state_dict())
    model.eval()
    with torch.no_grad():
        base_image = model.render(model.identity_image, model.adaptor.latent_mean[None])
        base_params = model.params_from_image(base_image)
    # Eq. 4 is the l1 norm of the residual d at the parameters of the mean-pose image.
    expected = (model.adaptor(base_params) - model.adaptor.latent_mean).abs().mean()
    value = pose_regularisation(model.adaptor, base_params)
    torch.testing.assert_close(value, expected)
    assert value > 0
    torch.testing.assert_close(model.adaptor_losses(base_image)["pose_reg"], value)
    # Minimising it alone drives the residual at the base parameters to zero.
    optimizer = torch.optim.Adam(model.adaptor.parameters(), lr=1e-2)
    for _ in range(60):
        optimizer.zero_grad()
        pose_regularisation(model.adaptor, base_params).backward()
        optimizer.step()
    assert pose_regularisation(model.adaptor, base_params) < 0.25 * value
    # An untrained adaptor starts at the mean pose (zero residual everywhere).
    fresh = _lpmm()
    assert pose_regularisation(fresh.adaptor, torch.randn(3, 20)) == 0


def test_lia_backbone_implements_the_protocol(fitted_lpmm: LPMM) -> None:
    backbone = fitted_lpmm.backbone
    assert isinstance(backbone, LIABackbone) and isinstance(backbone, PoseLatentBackbone)
    image = torch.rand(2, 3, SIZE, SIZE)
    pose = backbone.encode_pose(image)
    assert pose.shape == (2, backbone.pose_dim)
    with torch.no_grad():
        out = backbone.generate(backbone.encode_identity(image[:1]), pose)
    assert out.shape == (2, 3, SIZE, SIZE) and out.min() >= 0 and out.max() <= 1


def test_animate_shapes_and_relative_mode(fitted_lpmm: LPMM) -> None:
    source, driving = torch.rand(1, 1, 3, SIZE, SIZE), torch.rand(1, 3, 3, SIZE, SIZE)
    with torch.no_grad():
        absolute = fitted_lpmm.animate(source, driving)
        relative = fitted_lpmm.animate(source, driving, relative=True)
        assert absolute.shape == relative.shape == (1, 3, 3, SIZE, SIZE)
        # Relative: the first driving frame reproduces the source's own parameters.
        torch.testing.assert_close(relative[:, 0], fitted_lpmm.animate(source, source)[:, 0], atol=1e-4, rtol=0)


# ------------------------------------------------------------------------------------------- control
def test_parameter_and_preset_arithmetic(fitted_lpmm: LPMM, tmp_path: Path) -> None:
    model = fitted_lpmm
    std = model.pca.std
    params = torch.zeros(2, 20)
    moved = control.offset_params(params, {3: 1.5, 0: -1.0}, std)
    assert moved[0, 3] == pytest.approx(1.5 * std[3].item()) and moved[1, 0] == pytest.approx(-std[0].item())
    assert torch.equal(control.offset_params(moved, {3: -1.5, 0: 1.0}, std), params)
    assert control.set_params(moved, {3: 0.0}, std)[0, 3] == 0 and control.set_params(moved, {3: 0.0}, std)[0, 0] < 0
    torch.testing.assert_close(control.scale_params(moved, 0.5) * 2, moved)
    with pytest.raises(IndexError):
        control.offset_params(params, {20: 1.0}, std)

    library_path = tmp_path / "presets.json"
    control.save_preset(library_path, "surprise", {3: 1.5, 7: -0.8}, model)
    control.save_preset(library_path, "blink", {12: 2.0}, model)
    payload = json.loads(library_path.read_text())
    assert payload["format"] == "reenact-lpmm-presets" and payload["unit"] == "std"
    assert control.load_preset(library_path, "surprise") == {3: 1.5, 7: -0.8}
    library = control.PresetLibrary(library_path)
    assert library.names() == ["blink", "surprise"]
    # Presets add on top of any pose, and compose linearly.
    both = library.apply("blink", library.apply("surprise", params, model), model)
    torch.testing.assert_close(both, control.offset_params(params, {3: 1.5, 7: -0.8, 12: 2.0}, std))
    torch.testing.assert_close(library.apply("surprise", params, model, scale=2.0),
                               control.offset_params(params, {3: 3.0, 7: -1.6}, std))
    with pytest.raises(KeyError, match="no LPMM preset 'angry'"):
        library.get("angry")
    other = control.PresetLibrary(tmp_path / "other.json")
    other.presets["foreign"] = {"params": {"1": 1.0}, "basis": "0000000000000000", "num_params": 20}
    with pytest.raises(ValueError, match="made for LPMM basis"):
        other.apply("foreign", params, model)


def test_edit_api(fitted_lpmm: LPMM, tmp_path: Path) -> None:
    model = fitted_lpmm
    source = torch.rand(3, SIZE, SIZE)
    library_path = tmp_path / "presets.json"
    control.save_preset(library_path, "surprise", {3: 1.5}, model)
    plain = control.edit(model, source, {})
    assert plain.shape == (1, 3, SIZE, SIZE)
    # A preset and the same explicit offsets give the same image; they stack with extra offsets.
    by_preset = control.edit(model, source, {1: 0.5}, "surprise", presets_path=library_path)
    by_params = control.edit(model, source, {1: 0.5, 3: 1.5})
    torch.testing.assert_close(by_preset, by_params)
    assert not torch.allclose(by_params, plain)
    # A single-preset JSON file can be named directly.
    single = tmp_path / "surprise.json"
    control.save_preset(single, "surprise", {3: 1.5}, model)
    torch.testing.assert_close(control.edit(model, source, {1: 0.5}, str(single)), by_params)
    # Base pose p = 0 (Fig. 8), and scaling to 0 from any pose lands on it (Fig. 7).
    base = control.edit(model, source, None, base="zero")
    with torch.no_grad():
        expected = model.render(source[None], model.latent_from_params(control.zero_params(model)))
    torch.testing.assert_close(base, expected)
    torch.testing.assert_close(control.edit(model, source, {3: 2.0}, scale=0.0), base)
    # Mixing with the backbone's own image latent: no edit reproduces plain image-driven generation.
    with torch.no_grad():
        image_driven = model.render(source[None], model.backbone.encode_pose(source[None]))
    torch.testing.assert_close(control.edit(model, source, {}, use_image_latent=True), image_driven,
                               atol=1e-4, rtol=0)
    frames = control.sweep(model, source, 0, [-2.0, 0.0, 2.0])
    assert frames.shape == (3, 3, SIZE, SIZE)


# --------------------------------------------------------------------------------- staged Lightning fit
def test_staged_fit_and_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    backbone_path = _lia_checkpoint(tmp_path / "lia.ckpt")
    model = _lpmm(backbone_config=None, backbone_ckpt=str(backbone_path), regressor_steps=2, adaptor_steps=2)
    assert model.hparams.backbone_config == BACKBONE and model.hparams.backbone_ckpt is None
    batch = _tensor_batch(8, seed=8)
    model.fit_basis(torch.cat([batch["source_landmarks"][:, 0], batch["driving_landmarks"][:, 0]]))
    # Without a datamodule the adaptor inputs are prepared by hand (the CLI path draws them from the data).
    model.prepare_adaptor(batch["source"][0], batch["driving"][:, 0])
    items = [{k: v[i] for k, v in batch.items()} for i in range(8)]
    loader = torch.utils.data.DataLoader(items, batch_size=4)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    snapshots: dict[str, dict[str, torch.Tensor]] = {}

    class Snapshot(L.Callback):
        def on_train_batch_start(self, trainer: L.Trainer, module: LPMM, *args: object) -> None:
            if module.stage() == "adaptor" and "switch" not in snapshots:
                snapshots["switch"] = {k: v.clone() for k, v in module.state_dict().items()}

    trainer = L.Trainer(max_steps=4, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
                        callbacks=[Snapshot()], default_root_dir=tmp_path)
    trainer.fit(model, train_dataloaders=loader)
    assert trainer.global_step == 4 and model.stage() == "done"
    final, switch = model.state_dict(), snapshots["switch"]
    changed = lambda a, b, prefix: any(not torch.equal(a[k], b[k]) for k in a if k.startswith(prefix))  # noqa: E731
    assert changed(switch, initial, "regressor.") and not changed(switch, initial, "adaptor.mlp")
    assert not changed(final, switch, "regressor.") and changed(final, switch, "adaptor.mlp")
    assert not changed(final, initial, "backbone.") and not changed(final, initial, "pca.")

    path = tmp_path / "lpmm.ckpt"
    trainer.save_checkpoint(path)
    backbone_path.unlink()  # the LPMM checkpoint is self-contained
    loaded = reenact.models.load_from_checkpoint(path).eval()
    model.eval()
    source, driving = torch.rand(1, 1, 3, SIZE, SIZE), torch.rand(1, 2, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(loaded.animate(source, driving), model.animate(source, driving))
    assert loaded.pca.fingerprint() == model.pca.fingerprint()

    # `reenact edit` on that checkpoint: an offset edit to PNG and a parameter sweep to MP4.
    from PIL import Image

    image = tmp_path / "face.png"
    Image.fromarray(dot_faces(1, seed=3)[0][0]).save(image)
    edited = tmp_path / "edited.png"
    assert main(["edit", "--ckpt", str(path), "--source", str(image), "--param", "0=+1.5", "--set", "1=-1",
                 "--out", str(edited)]) == 0
    assert np.asarray(Image.open(edited)).shape == (SIZE, SIZE, 3)
    assert json.loads(edited.with_suffix(".png.json").read_text())["offsets"] == {"0": 1.5}
    with pytest.raises(SystemExit, match="already exists"):
        main(["edit", "--ckpt", str(path), "--source", str(image), "--out", str(edited)])
    with pytest.raises(SystemExit, match="INDEX=VALUE"):
        main(["edit", "--ckpt", str(path), "--source", str(image), "--param", "3", "--out", str(tmp_path / "x.png")])
    swept = tmp_path / "sweep.mp4"
    assert main(["edit", "--ckpt", str(path), "--source", str(image), "--sweep", "0", "--sweep-from", "-2",
                 "--sweep-to", "2", "--steps", "5", "--out", str(swept)]) == 0
    from reenact.data.video import read_video

    assert read_video(swept).shape == (5, SIZE, SIZE, 3)


def test_backbone_checkpoint_formats(tmp_path: Path) -> None:
    from reenact.models.lia.official import OFFICIAL_CONFIG
    from reenact.models.lpmm.lightning_model import read_backbone_checkpoint

    name, config, state = read_backbone_checkpoint(_lia_checkpoint(tmp_path / "lia.ckpt"))
    assert name == "lia" and config == BACKBONE and all(k.startswith(("enc.", "dec.")) for k in state)
    # The released official file nests the generator under "gen" and is always the 256 px configuration.
    torch.save({"gen": {"dec.direction.weight": torch.zeros(512, 20)}, "args": None}, tmp_path / "vox.pt")
    name, config, state = read_backbone_checkpoint(tmp_path / "vox.pt")
    assert name == "lia" and config == OFFICIAL_CONFIG and list(state) == ["dec.direction.weight"]
    torch.save({"state_dict": {}, "hyper_parameters": {}, "reenact": {"model": "keypoint-warp"}}, tmp_path / "kw.ckpt")
    with pytest.raises(ValueError, match="LPMM backbones: lia"):
        read_backbone_checkpoint(tmp_path / "kw.ckpt")


def test_fit_without_backbone_says_how_to_make_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_dot_dataset(tmp_path / "data", videos=4, frames=4)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="reenact fit --model lia --preset tiny"):
        main(["fit", "--model", "lpmm", "--data.root", str(root), "--trainer.accelerator", "cpu",
              "--model.image_size", str(SIZE), "--model.backbone_config", json.dumps(BACKBONE),
              "--trainer.max_steps", "1"])


def test_cli_fit_runs_every_stage_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_dot_dataset(tmp_path / "data")
    backbone_path = _lia_checkpoint(tmp_path / "lia.ckpt")
    monkeypatch.chdir(tmp_path)
    common = ["fit", "--model", "lpmm", "--data.root", str(root), "--trainer.accelerator", "cpu",
              "--model.image_size", str(SIZE), "--trainer.num_sanity_val_steps", "0",
              "--trainer.limit_val_batches", "1",
              "--model.backbone_ckpt", str(backbone_path), "--model.num_params", "20",
              "--model.regressor_arch", "mobilenetv2_050", "--model.regressor_steps", "3", "--model.adaptor_steps", "3",
              "--model.latent_mean_frames", "8", "--data.batch_size", "2", "--data.max_frames_per_video", "4",
              "--trainer.val_check_interval", "2", "--trainer.log_every_n_steps", "1"]
    # Interrupted inside the adaptor stage (3 regressor steps + 1 adaptor step) ...
    assert main([*common, "--trainer.max_steps", "4"]) == 0
    runs = tmp_path / "runs" / "lpmm"
    first = next(runs.rglob("last.ckpt"))
    state = torch.load(first, map_location="cpu", weights_only=True)
    assert state["global_step"] == 4 and bool(state["state_dict"]["pca.fitted"])
    assert bool(state["state_dict"]["adaptor.latent_mean_ready"]) and bool(state["state_dict"]["identity_ready"])
    # ... and resumed to the end of it.
    assert main([*common, "--trainer.max_steps", "6", "--ckpt_path", str(first)]) == 0
    last = max(runs.rglob("last.ckpt"), key=lambda p: p.stat().st_mtime)
    model = reenact.models.load_from_checkpoint(last).eval()
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 6
    metrics = next(runs.rglob("metrics.csv")).read_text()
    assert "train/regressor/regressor_l1" in metrics and "train/adaptor/rgb" in metrics and "val/lp_nme" in metrics
    image = control.edit(model, torch.rand(3, SIZE, SIZE), {0: 1.0})
    assert image.shape == (1, 3, SIZE, SIZE)


@pytest.mark.slow
def test_ddp_fit_two_processes(tmp_path: Path) -> None:
    root = write_dot_dataset(tmp_path / "data")
    backbone_path = _lia_checkpoint(tmp_path / "lia.ckpt")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    args = ["fit", "--model", "lpmm", "--data.root", str(root), "--trainer.accelerator", "cpu",
            "--model.image_size", str(SIZE), "--trainer.devices", "2", "--trainer.strategy", "ddp",
            "--model.backbone_ckpt", str(backbone_path),
            "--model.num_params", "20", "--model.regressor_arch", "mobilenetv2_050", "--model.regressor_steps", "2",
            "--model.adaptor_steps", "2", "--model.latent_mean_frames", "8", "--trainer.max_steps", "4",
            "--trainer.val_check_interval", "2", "--data.batch_size", "2", "--data.max_frames_per_video", "4",
            "--trainer.log_every_n_steps", "1"]
    run = subprocess.run([sys.executable, "-m", "reenact", *args], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    checkpoint = next((tmp_path / "runs" / "lpmm").rglob("last.ckpt"))
    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert payload["reenact"]["model"] == "lpmm" and payload["global_step"] == 4
    model = reenact.models.load_from_checkpoint(checkpoint).eval()
    with torch.no_grad():
        out = model.animate(torch.rand(1, 1, 3, SIZE, SIZE), torch.rand(1, 2, 3, SIZE, SIZE))
    assert out.shape == (1, 2, 3, SIZE, SIZE)


# ------------------------------------------------------------------------------------ editing protocol
def test_edit_image_transfers_expression_and_needs_a_pose_map_for_head_pose(fitted_lpmm: LPMM) -> None:
    """Without a fitted pose map LPMM's editing is expression transfer only (its parameters hold no head angles;
    test_lpmm_pose covers the map): the mixed landmarks keep the source's anchor points and take the reference's
    expression points."""
    from reenact.metrics import EXPRESSION_TRANSFER
    from reenact.models.lpmm.posemap import PoseNotFittedError

    model = fitted_lpmm
    source, reference = torch.rand(2, 3, SIZE, SIZE), torch.rand(2, 3, SIZE, SIZE)
    assert model.supports_editing and model.editing_tasks == (EXPRESSION_TRANSFER,)
    model.configure_evaluation(metrics=["l1", "are", "auh"])
    assert model.editing_metric_names() == ["auh"]
    with torch.no_grad():
        # No reference: the source's own parameters, i.e. `control.edit` without changes.
        # Equal up to the fixture's basis: its dot faces have fewer than 40 modes, so some of the 40 components
        # are null-space directions whose centroid the transfer's re-centring removes (|p' - p| <= 3e-4 sigma).
        torch.testing.assert_close(model.edit_image(source), control.edit(model, source, {}), atol=1e-3, rtol=1e-3)
        transferred = model.edit_image(source, expression_from=reference)
    assert transferred.shape == (2, 3, SIZE, SIZE) and not torch.allclose(transferred, model.edit_image(source))
    with pytest.raises(PoseNotFittedError, match="no pose map"):
        model.edit_image(source, head_pose=torch.zeros(2, 3))
    # Landmark mixing: a reference that is the source moved and scaled gives back the source's points.
    points = model.pca.reconstruct(torch.randn(2, model.pca.num_components) * model.pca.std).unflatten(-1, (68, 2))
    moved = 1.3 * points + torch.tensor([0.05, -0.02])
    torch.testing.assert_close(control.mix_expression(points, moved), points, atol=1e-5, rtol=0)
    other = model.pca.reconstruct(torch.randn(2, model.pca.num_components) * model.pca.std).unflatten(-1, (68, 2))
    mixed = control.mix_expression(points, other)
    anchors = [i for i in control.ANCHOR_POINTS if i not in control.EXPRESSION_POINTS]
    torch.testing.assert_close(mixed[:, anchors], points[:, anchors])


def test_adaptor_reads_parameters_in_units_of_their_std() -> None:
    """``D`` sees ``p / sigma``: the same function as a first layer divided by ``sigma``; the scale is set only
    while the adaptor is untrained, and adaptors saved without it load with the scale they were trained with."""
    from reenact.models.lpmm.adaptor import LPAdaptor

    torch.manual_seed(0)
    scaled, plain = LPAdaptor(4, 3, hidden=8), LPAdaptor(4, 3, hidden=8)
    sigma = torch.tensor([0.1, 0.05, 0.02, 0.004])
    scaled.set_input_scale(sigma)
    torch.nn.init.normal_(scaled.mlp[-1].weight)  # now "trained"
    plain.load_state_dict({**scaled.state_dict(), "input_scale": torch.ones(4)})
    with torch.no_grad():
        plain.mlp[0].weight.div_(sigma)
    params = torch.randn(5, 4) * sigma
    torch.testing.assert_close(scaled(params), plain(params))
    assert scaled.trained
    with pytest.raises(ValueError, match="already trained"):
        scaled.set_input_scale(torch.ones(4))
    old = {k: v for k, v in scaled.state_dict().items() if k != "input_scale"}
    restored = LPAdaptor(4, 3, hidden=8)
    restored.input_scale.fill_(7.0)
    restored.load_state_dict(old)  # strict: no missing key
    assert torch.equal(restored.input_scale, torch.ones(4))


def test_fitting_the_basis_sets_the_adaptor_scale(fitted_lpmm: LPMM) -> None:
    std = fitted_lpmm.pca.std
    torch.testing.assert_close(fitted_lpmm.adaptor.input_scale, std.clamp_min(0.01 * float(std.max())))
