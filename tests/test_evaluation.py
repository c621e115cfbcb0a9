"""The shared evaluation: DDP-even validation shards, padding skipped by metrics, result files."""

from __future__ import annotations

import json
from pathlib import Path

import torch

import reenact.models
from reenact.data.samplers import EvenDistributedSampler, PaddingFlagDataset
from reenact.evaluation import results_markdown, write_results


def test_even_sampler_gives_every_rank_the_same_count_and_covers_all() -> None:
    for size, world in ((5, 2), (7, 3), (2, 4), (6, 2)):
        shards = [list(EvenDistributedSampler(size, num_replicas=world, rank=r)) for r in range(world)]
        assert len({len(s) for s in shards}) == 1
        assert all(len(s) == len(EvenDistributedSampler(size, num_replicas=world, rank=0)) for s in shards)
        real = sorted(i for s in shards for i in s if i < size)
        assert real == list(range(size))  # each real item exactly once


def test_padding_flag_dataset_marks_repeats() -> None:
    dataset = PaddingFlagDataset([{"x": 0}, {"x": 1}, {"x": 2}])
    assert dataset[1] == {"x": 1, "padding": False}
    assert dataset[4] == {"x": 1, "padding": True}


def _batch(padding: bool) -> dict:
    return {"source": torch.rand(1, 1, 3, 32, 32), "driving": torch.rand(1, 3, 3, 32, 32),
            "protocol": ["same_identity"], "padding": torch.tensor([padding])}


def test_padding_batches_are_generated_but_not_counted() -> None:
    model = reenact.models.create_model("copy-source", evaluation={"metrics": ["l1", "psnr", "ms_ssim"]})
    model._reset_evaluation()
    model._evaluation_step(_batch(False), 0)
    model._evaluation_step(_batch(True), 1)
    sections = model.evaluator.collect(model.editing_frame_stride)
    assert sections["same_identity"]["videos"] == 1 and sections["same_identity"]["frames"] == 3
    assert {m["name"]: m["count"] for m in sections["same_identity"]["metrics"]} == {"l1": 3, "psnr": 3,
                                                                                    "ms_ssim": 3}


def test_results_files(tmp_path: Path) -> None:
    payload = {
        "model": "copy-source", "checkpoint": None, "reenact_version": "0", "dataset": {"root": "r", "image_size": 64},
        "relative": False, "created": "now",
        "protocols": {
            "same_identity": {"videos": 2, "frames": 10, "metrics": [
                {"name": "l1", "value": 0.1234567, "backend": "torch", "count": 10, "higher_is_better": False,
                 "reason": None, "details": {}},
                {"name": "fid", "value": None, "backend": "InceptionV3", "count": 0, "higher_is_better": False,
                 "reason": "weights missing", "details": {}},
            ]},
            "cross_identity": {"videos": 1, "frames": 5, "metrics": [], "pairs": [["a#1", "b#1"]]},
        },
    }
    json_path, md_path = write_results(tmp_path / "out", payload)
    assert json.loads(json_path.read_text()) == payload
    markdown = md_path.read_text()
    assert "| l1 ↓ | 0.1235 | 10 | torch |" in markdown
    assert "| fid ↓ | n/a | 0 | unavailable: weights missing |" in markdown
    assert "no registered metric applies" in markdown and "Pairs (source, driving): 1" in markdown
    assert results_markdown(payload) == markdown


def test_multi_source_evaluation_items(synthetic_root: Path) -> None:
    """FSRT's 2-Src protocol: two source frames (0 and F/2) per test item, through the DataModule."""
    from reenact.data import ReenactDataModule
    from reenact.data.protocols import source_indices

    module = ReenactDataModule(root=str(synthetic_root), image_size=32, eval_num_sources=2)
    module.setup("test")
    same, cross = (loader.dataset for loader in module.test_dataloader())
    item = same[0]
    assert item["source"].shape == (2, 3, 32, 32) and cross[0]["source"].shape[0] == 2
    assert item["source_index"].tolist() == [0, 5] == source_indices(same.records[0], 2)
    assert module.describe()["eval_num_sources"] == 2
    model = reenact.models.create_model("copy-source", image_size=32)
    batch = next(iter(module.test_dataloader()[0]))
    assert model.animate(batch["source"], batch["driving"]).shape == batch["driving"].shape


def test_models_that_cannot_edit_have_no_editing_section(synthetic_root: Path, tmp_path: Path) -> None:
    """copy-source selects `are` (and `auh`) but cannot edit: no `editing` protocol, and `edit_image` refuses."""
    import lightning as L
    import pytest

    from reenact.data import ReenactDataModule

    model = reenact.models.create_model("copy-source", image_size=64, evaluation={"metrics": ["l1", "are", "auh"]})
    assert not model.supports_editing and model.editing_metric_names() == []
    with pytest.raises(NotImplementedError):
        model.edit_image(torch.rand(1, 3, 64, 64), head_pose=torch.zeros(1, 3))
    data = ReenactDataModule(root=str(synthetic_root), image_size=64, max_frames_per_video=2,
                             num_cross_identity_pairs=1)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    trainer.test(model, datamodule=data)
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["protocols"]) == {"same_identity", "cross_identity"}
    assert "## editing" not in (tmp_path / "results.md").read_text()


def test_results_markdown_lists_the_editing_tasks() -> None:
    metric = {"name": "are", "value": 1.5, "backend": "dlib", "count": 4, "higher_is_better": False, "reason": None,
              "details": {}}
    payload = {"model": "pechead", "dataset": None, "protocols": {"editing": {
        "videos": 2, "frames": 4, "metrics": [metric],
        "tasks": {"frontalisation": {"images": 4, "metrics": ["are"], "what": "to yaw = pitch = roll = 0"}}}}}
    markdown = results_markdown(payload)
    assert "## editing" in markdown and "| are ↓ | 1.5000 | 4 | dlib |" in markdown
    assert "- frontalisation (4 images; are): to yaw = pitch = roll = 0" in markdown


def test_missing_evaluator_weights_are_reported_not_raised(synthetic_root: Path,
                                                            no_pretrained_weights: Path) -> None:
    """With no LPIPS backbone weights anywhere, `trainer.test` still evaluates L1 and reports LPIPS as
    unavailable with the file it needs, instead of raising (the `paper` presets select it)."""
    import lightning as L

    from reenact.data import ReenactDataModule

    tmp_path = no_pretrained_weights
    model = reenact.models.create_model("copy-source", image_size=64, evaluation={"metrics": ["l1", "lpips"]})
    data = ReenactDataModule(root=str(synthetic_root), image_size=64, max_frames_per_video=2,
                             num_cross_identity_pairs=1)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path / "run")
    trainer.test(model, datamodule=data)
    metrics = {m["name"]: m for m in json.loads((tmp_path / "run" / "results.json").read_text())
               ["protocols"]["same_identity"]["metrics"]}
    assert metrics["l1"]["value"] is not None
    assert metrics["lpips"]["value"] is None and metrics["lpips"]["count"] == 0
    assert "alexnet-owt-7be5be79.pth" in metrics["lpips"]["reason"]


def test_validation_runs_its_cheap_metrics_and_test_its_own(synthetic_root: Path, tmp_path: Path) -> None:
    """The ``evaluation`` section: validation scores ``validation_metrics`` only (no face backend at every
    validation), test scores ``metrics``; the model's constructor takes none of it."""
    import lightning as L

    from reenact.data import ReenactDataModule

    model = reenact.models.create_model("copy-source", image_size=64,
                                        evaluation={"metrics": ["l1", "akd"], "validation_metrics": ["psnr"]})
    data = ReenactDataModule(root=str(synthetic_root), image_size=64, max_frames_per_video=2,
                             num_cross_identity_pairs=1)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    validated = trainer.validate(model, datamodule=data, verbose=False)[0]
    assert "val/same_identity/psnr" in validated
    assert not any(key.endswith(("/l1", "/akd")) for key in validated)
    trainer.test(model, datamodule=data, verbose=False)
    results = json.loads((tmp_path / "results.json").read_text())
    assert [m["name"] for m in results["protocols"]["same_identity"]["metrics"]] == ["l1", "akd"]


def test_evaluation_config_rejects_unknown_metrics_and_old_arguments() -> None:
    import pytest

    from reenact.evaluation import EvaluationConfig

    with pytest.raises(ValueError, match=r"evaluation.metrics: unknown metrics \['l2'\]"):
        EvaluationConfig(metrics=["l1", "l2"])
    with pytest.raises(ValueError, match="evaluation.chunk must be at least 1"):
        EvaluationConfig(chunk=0)
    # The evaluation is no longer a model argument: a model constructor refuses it.
    with pytest.raises(TypeError, match="metrics"):
        reenact.models.create_model("copy-source", metrics=["l1"])
    model = reenact.models.create_model("keypoint-warp", evaluation={"relative": True, "chunk": 3})
    assert model.evaluation == EvaluationConfig(relative=True, chunk=3)
    assert model.configure_evaluation(metrics=["l1"]).evaluation.metrics == ("l1",)
