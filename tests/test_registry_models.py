"""Registry API, the copy-source floor and the keypoint-warp reference model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import reenact.models
from reenact.models.base import ReenactmentModule


def test_list_models_has_references() -> None:
    names = reenact.models.list_models()
    assert "copy-source" in names and "keypoint-warp" in names


def test_create_model_applies_preset_and_overrides() -> None:
    model = reenact.models.create_model("keypoint-warp", preset="tiny", lr=1e-3, generator={"num_keypoints": 5})
    assert isinstance(model, ReenactmentModule)
    assert model.hparams.lr == 1e-3 and model.hparams.generator["num_keypoints"] == 5
    assert model.generator.config.warped_source_skip  # the preset's other generator fields stay
    assert model.image_size == 64  # from conf/keypoint-warp/tiny.yaml


def test_unknown_model_and_preset_errors() -> None:
    with pytest.raises(KeyError, match="unknown model 'nope'.*copy-source"):
        reenact.models.create_model("nope")
    with pytest.raises(FileNotFoundError, match="no preset 'huge'.*tiny"):
        reenact.models.create_model("copy-source", preset="huge")


def test_copy_source_animate_repeats_source() -> None:
    model = reenact.models.create_model("copy-source")
    source = torch.rand(2, 1, 3, 64, 64)
    driving = torch.rand(2, 5, 3, 64, 64)
    out = model.animate(source, driving)
    assert out.shape == (2, 5, 3, 64, 64)
    assert torch.equal(out[:, 3], source[:, 0])


def test_keypoint_warp_animate_shapes_and_relative() -> None:
    torch.manual_seed(0)
    model = reenact.models.create_model("keypoint-warp").eval()
    source = torch.rand(1, 1, 3, 64, 64)
    driving = torch.rand(1, 3, 3, 64, 64)
    with torch.no_grad():
        absolute = model.animate(source, driving)
        relative = model.animate(source, driving, relative=True)
    assert absolute.shape == relative.shape == (1, 3, 3, 64, 64)
    assert absolute.min() >= 0 and absolute.max() <= 1
    # Relative motion: the first driving frame maps to the source's own pose.
    assert not torch.allclose(absolute, relative)


def test_chunked_generation_matches_whole_video() -> None:
    torch.manual_seed(0)
    model = reenact.models.create_model("keypoint-warp", evaluation={"chunk": 2}).eval()
    source = torch.rand(1, 1, 3, 64, 64)
    driving = torch.rand(1, 5, 3, 64, 64)
    with torch.no_grad():
        for relative in (False, True):
            chunked = model.generate_video(source, driving, relative)
            whole = model.animate(source, driving, relative=relative)
            torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-5)


def test_keypoint_warp_training_lowers_loss() -> None:
    torch.manual_seed(0)
    model = reenact.models.create_model("keypoint-warp", equivariance_weight=0.0)
    # Smooth images and shifted copies: structure a warp can explain (pure noise has nothing to learn).
    smooth = torch.nn.functional.interpolate(torch.rand(2, 3, 8, 8), size=64, mode="bicubic").clamp(0, 1)
    batch = {"source": smooth[:, None], "driving": smooth.roll(shifts=4, dims=-1)[:, None]}
    optimizer = model.configure_optimizers()
    first = None
    for _ in range(15):
        loss = model.losses(batch)["total"]
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model.losses(batch)["total"].item() < 0.8 * first


def test_keypoint_warp_losses_have_gradients_everywhere() -> None:
    torch.manual_seed(0)
    model = reenact.models.create_model("keypoint-warp")
    batch = {"source": torch.rand(2, 1, 3, 64, 64), "driving": torch.rand(2, 1, 3, 64, 64)}
    losses = model.losses(batch)
    assert set(losses) == {"reconstruction", "equivariance", "total"}
    losses["total"].backward()
    without_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert without_grad == []


def _saved_keypoint_warp(tmp_path: Path) -> tuple[ReenactmentModule, Path]:
    """A keypoint-warp model (6 keypoints) and its checkpoint written by Lightning, ``tmp_path/model.ckpt``."""
    import lightning as L

    model = reenact.models.create_model("keypoint-warp", generator={"num_keypoints": 6})
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    trainer.strategy.connect(model)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    return model, path


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model, path = _saved_keypoint_warp(tmp_path)
    loaded = reenact.models.load_from_checkpoint(path)
    assert type(loaded) is type(model) and loaded.hparams.generator["num_keypoints"] == 6
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_checkpoint_with_a_removed_hyper_parameter_still_loads(tmp_path: Path) -> None:
    """An older checkpoint whose hyper-parameters include one this version removed (FSRT's former
    ``out_of_frame_max_zoom``) loads with a warning naming it; its weights must still match."""
    _, path = _saved_keypoint_warp(tmp_path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["out_of_frame_max_zoom"] = 1.25
    torch.save(checkpoint, path)
    with pytest.warns(UserWarning, match="no longer has: out_of_frame_max_zoom"):
        loaded = reenact.models.load_from_checkpoint(path)
    assert loaded.hparams.generator["num_keypoints"] == 6 and "out_of_frame_max_zoom" not in loaded.hparams


def test_checkpoint_with_flat_architecture_arguments_loads(tmp_path: Path) -> None:
    """Checkpoints written before the ``generator`` section existed store the architecture as flat arguments;
    they load into the same architecture and weights."""
    model, path = _saved_keypoint_warp(tmp_path)
    checkpoint = torch.load(path, weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    hparams.update(hparams.pop("generator"))
    # ... and the evaluation arguments the models took before the `evaluation` section existed.
    hparams.update(metrics=["l1"], relative=True, eval_chunk=4, num_sample_frames=2)
    torch.save(checkpoint, path)
    loaded = reenact.models.load_from_checkpoint(path)
    assert loaded.generator.config == model.generator.config and loaded.generator.num_keypoints == 6
    assert "metrics" not in loaded.hparams and "eval_chunk" not in loaded.hparams
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_load_from_checkpoint_rejects_foreign_files(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="no 'reenact' section"):
        reenact.models.load_from_checkpoint(foreign)
    with pytest.raises(FileNotFoundError):
        reenact.models.load_from_checkpoint(tmp_path / "missing.ckpt")
