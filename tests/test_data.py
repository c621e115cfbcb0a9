"""Tests of the shared data pipeline (reenact.data): discovery, checks, datasets, augmentation, protocols and
the DataModule. Every video is written here with ``write_video``/``write_frame_folder``; nothing depends on
the synthetic generator.

Test videos encode what they are in their pixels: frame ``t`` of video ``v`` is a flat colour
``R = 40 + 20 v``, ``G = 10 + 20 t``, ``B = 128`` with a black block in the top-left corner, so a test can
decode which video and frame a sample shows and whether it was flipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reenact.data import (
    IBUG68_FLIP,
    AugmentConfig,
    CrossIdentityDataset,
    DatasetError,
    DatasetReport,
    MultiSourceDataset,
    PairDataset,
    ReenactDataModule,
    SameIdentityDataset,
    SamplingSpec,
    SeededRandomSampler,
    SequenceDataset,
    TrainingDataset,
    UnpaddedDistributedSampler,
    check_dataset,
    collate_single,
    discover,
    load_pairs,
    make_cross_identity_pairs,
    save_pairs,
)
from reenact.data.datasets import scale_landmarks
from reenact.data.samplers import EpochDistributedSampler
from reenact.data.video import read_video, write_frame_folder, write_video

SIZE = 48  # stored frame size
OUT = 32  # image_size the datasets resize to
FRAMES = 10
BLOCK = 12  # side of the black marker block, stored pixels

# ------------------------------------------------------------------------------ test_data fixtures/helpers
TRAIN_VIDEOS = {  # name -> (video id, container)
    "alice#1": (0, ".mp4"),
    "alice#2": (1, "png"),
    "bob#1": (2, ".mp4"),
    "bob#2": (3, ".avi"),
    "carol": (4, ".gif"),
}
TEST_VIDEOS = {
    "alice#3": (5, ".mp4"),
    "bob#3": (6, "png"),
    "carol#2": (7, ".mp4"),
    "dave": (8, ".mp4"),
}


def coded_frames(video: int, frames: int = FRAMES, height: int = SIZE, width: int = SIZE) -> np.ndarray:
    """``[frames, height, width, 3]`` uint8 whose colour encodes ``video`` and the frame index."""
    out = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        out[t] = (40 + 20 * video, 10 + 20 * t, 128)
    out[:, :BLOCK, :BLOCK] = 0
    return out


def decode(frames: torch.Tensor) -> list[tuple[int, int]]:
    """``[K, 3, H, W]`` in [0, 1] -> ``(video, frame)`` per frame, read from the bottom-right quarter."""
    h, w = frames.shape[-2:]
    colour = frames[:, :, h // 2:, w // 2:].mean(dim=(-1, -2)) * 255
    return [(round((float(r) - 40) / 20), round((float(g) - 10) / 20)) for r, g, _ in colour]


def landmarks_for(video: int, frames: int = FRAMES) -> np.ndarray:
    """``[frames, 68, 2]``: every point at a distinct position, so a permutation is visible."""
    points = np.zeros((frames, 68, 2), np.float32)
    index = np.arange(68, dtype=np.float32)
    for t in range(frames):
        points[t, :, 0] = 2.0 + index * 0.6 + t * 0.1 + video
        points[t, :, 1] = 5.0 + (index % 17) * 2.0 + t * 0.2
    return points


def write_annotation(root: Path, split: str, name: str, video: int, frames: int = FRAMES, **override) -> Path:
    path = root / "annotations" / split / f"{name}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "landmarks": landmarks_for(video, frames),
        "pose": np.stack([np.arange(frames) + 10.0, np.arange(frames) - 5.0, np.full(frames, 3.0)], 1)
        .astype(np.float32),
        "expression": np.tile(np.arange(4, dtype=np.float32), (frames, 1)) + video,
        "identity_coeffs": np.arange(6, dtype=np.float32),
        "identity": np.array(name.partition("#")[0]),
    }
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def write_entry(split_dir: Path, name: str, frames: np.ndarray, kind: str) -> Path:
    if kind == "png":
        return write_frame_folder(split_dir / name, frames)
    return write_video(split_dir / f"{name}{kind}", frames)


@pytest.fixture(scope="module")
def tiny_video_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FOMM root: 5 train videos (mp4, PNG folder, avi, gif; 3 identities), 4 test videos (4 identities),
    10 frames of 48x48 each, with annotations for every video."""
    root = tmp_path_factory.mktemp("tiny_video_root")
    for split, videos in (("train", TRAIN_VIDEOS), ("test", TEST_VIDEOS)):
        for name, (video, kind) in videos.items():
            write_entry(root / split, name, coded_frames(video), kind)
            write_annotation(root, split, name, video)
    (root / "meta.json").write_text(json.dumps({"generator": "tests/test_data.py"}))
    return root


@pytest.fixture()
def make_root(tmp_path: Path):
    """Build a small valid root (2 train, 2 test mp4s) that a test then breaks in one place."""

    def build() -> Path:
        root = tmp_path / "data"
        for split, names in (("train", ["ann#1", "ben#1"]), ("test", ["ann#2", "ben#2"])):
            for video, name in enumerate(names):
                write_video(root / split / f"{name}.mp4", coded_frames(video, frames=6))
        return root

    return build


# --------------------------------------------------------------------------------------------- discovery
def test_discovery_finds_every_container_and_groups_identities(tiny_video_root: Path) -> None:
    records = discover(tiny_video_root, "train")
    assert [r.name for r in records] == sorted(TRAIN_VIDEOS)
    by_name = {r.name: r for r in records}
    assert by_name["alice#2"].path.is_dir() and by_name["bob#2"].path.suffix == ".avi"
    assert by_name["carol"].path.suffix == ".gif"
    assert (by_name["alice#1"].identity, by_name["alice#1"].clip) == ("alice", "1")
    assert (by_name["carol"].identity, by_name["carol"].clip) == ("carol", "")
    for record in records:
        assert record.num_frames == FRAMES and (record.height, record.width) == (SIZE, SIZE)
        assert record.annotation == tiny_video_root / "annotations" / "train" / f"{record.name}.npz"


def test_discovery_ignores_hidden_entries(tiny_video_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_video(root / "train" / "a.mp4", coded_frames(0))
    (root / "train" / ".a.mp4.partial.mp4").write_bytes(b"half-written")
    assert [r.name for r in discover(root, "train")] == ["a"]


def test_check_passes_on_a_good_dataset(tiny_video_root: Path) -> None:
    report = check_dataset(tiny_video_root, image_size=OUT)
    assert report.ok, report.problems
    assert report.warnings == []
    assert report.videos == {"train": 5, "test": 4}
    assert report.frames == {"train": 5 * FRAMES, "test": 4 * FRAMES}
    assert report.annotation_keys["train"] == ["landmarks", "pose", "expression"]
    json.dumps(report.to_json())


# --------------------------------------------------------------------------------------------- datasets
@pytest.mark.parametrize(
    ("mode", "num_source", "num_driving"), [("pair", 1, 1), ("sequence", 5, 5), ("multi_source", 3, 1)]
)
def test_sampling_modes(tiny_video_root: Path, mode: str, num_source: int, num_driving: int) -> None:
    records = discover(tiny_video_root, "train")
    dataset = TrainingDataset(records, mode, num_source, num_driving, image_size=OUT, augment=False,
                              repeats=3)
    assert len(dataset) == 3 * len(records)
    identities = sorted({r.identity for r in records})
    for index in range(len(records)):
        sample = dataset[(0, index)]
        record = records[index]
        assert sample["source"].shape == (num_source, 3, OUT, OUT) and sample["source"].dtype == torch.float32
        assert sample["driving"].shape == (num_driving, 3, OUT, OUT)
        assert sample["driving"].dtype == torch.float32
        for key in ("source", "driving"):
            assert float(sample[key].min()) >= 0.0 and float(sample[key].max()) <= 1.0
        assert sample["video"] == record.name
        assert sample["identity"].dtype == torch.long
        assert int(sample["identity"]) == identities.index(record.identity)
        video = TRAIN_VIDEOS[record.name][0]
        source_codes = decode(sample["source"])
        driving_codes = decode(sample["driving"])
        # Source and driving frames show the same video, and the frames their indices name.
        assert source_codes == [(video, int(i)) for i in sample["source_index"]]
        assert driving_codes == [(video, int(i)) for i in sample["driving_index"]]
        assert sample["source_landmarks"].shape == (num_source, 68, 2)
        assert sample["driving_pose"].shape == (num_driving, 3)
        assert sample["driving_expression"].shape == (num_driving, 4)
        if mode == "pair":
            assert sample["source_index"].item() != sample["driving_index"].item()
        if mode == "sequence":
            for key in ("source_index", "driving_index"):
                assert torch.equal(torch.diff(sample[key]), torch.ones(num_source - 1, dtype=torch.long))
        if mode == "multi_source":
            assert len(set(sample["source_index"].tolist()) | set(sample["driving_index"].tolist())) == 4


def test_batches_collate_to_documented_shapes(tiny_video_root: Path) -> None:
    dataset = SequenceDataset(discover(tiny_video_root, "train"), length=3, image_size=OUT)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, sampler=SeededRandomSampler(len(dataset)))
    batch = next(iter(loader))
    assert batch["source"].shape == (4, 3, 3, OUT, OUT) and batch["driving"].shape == (4, 3, 3, OUT, OUT)
    assert batch["source_landmarks"].shape == (4, 3, 68, 2) and batch["identity"].shape == (4,)
    assert batch["source_index"].dtype == torch.long and len(batch["video"]) == 4


def test_convenience_classes_pick_their_mode(tiny_video_root: Path) -> None:
    records = discover(tiny_video_root, "train")
    assert PairDataset(records).spec == SamplingSpec("pair", 1, 1)
    assert SequenceDataset(records).spec == SamplingSpec("sequence", 5, 5)
    assert MultiSourceDataset(records, num_source=4).spec == SamplingSpec("multi_source", 4, 1)
    with pytest.raises(ValueError, match="needs 11 frames"):
        SequenceDataset(records, length=11)
    with pytest.raises(ValueError, match="unknown sampling mode"):
        SamplingSpec("triplet")


def test_annotations_are_rescaled_to_image_size(tiny_video_root: Path) -> None:
    records = discover(tiny_video_root, "train")
    dataset = PairDataset(records, image_size=OUT, augment=False)
    sample = dataset[(0, 0)]
    source = int(sample["source_index"])
    stored = landmarks_for(TRAIN_VIDEOS[records[0].name][0])[source]
    expected = (stored + 0.5) * (OUT / SIZE) - 0.5
    assert torch.allclose(sample["source_landmarks"][0], torch.from_numpy(expected), atol=1e-5)
    assert torch.allclose(sample["source_pose"][0], torch.tensor([10.0 + source, source - 5.0, 3.0]))
    # Same stored size -> unchanged coordinates.
    assert torch.allclose(scale_landmarks(stored, SIZE, SIZE, SIZE), torch.from_numpy(stored))


# --------------------------------------------------------------------------------------------- augmentation
def test_flip_is_consistent_and_flips_landmarks_and_pose(tiny_video_root: Path) -> None:
    records = discover(tiny_video_root, "train")
    flip_only = AugmentConfig(flip_probability=1.0, brightness=0, contrast=0, saturation=0, hue=0)
    plain = TrainingDataset(records, "multi_source", 3, 2, image_size=OUT, augment=False)
    flipped = TrainingDataset(records, "multi_source", 3, 2, image_size=OUT, augment=flip_only)
    a, b = plain[(1, 2)], flipped[(1, 2)]
    for key in ("source_index", "driving_index"):
        assert torch.equal(a[key], b[key])
    marker = BLOCK * OUT // SIZE
    for key in ("source", "driving"):
        assert torch.allclose(b[key], a[key].flip(-1))
        # The black block moved from top-left to top-right in every frame.
        assert float(b[key][:, :, :marker - 1, -(marker - 1):].max()) < 0.1
        assert float(b[key][:, :, :marker - 1, :marker - 1].min()) > 0.1
        original, mirrored = a[f"{key}_landmarks"], b[f"{key}_landmarks"]
        # Convention: x -> W - 1 - x, and point i takes the place of its mirror image IBUG68_FLIP[i].
        assert torch.allclose(mirrored[..., 36, 0], (OUT - 1) - original[..., 45, 0])
        assert torch.allclose(mirrored[..., 36, 1], original[..., 45, 1])
        assert torch.allclose(mirrored[..., 0, 0], (OUT - 1) - original[..., 16, 0])
        assert torch.allclose(mirrored[..., 30, :], torch.stack([(OUT - 1) - original[..., 30, 0],
                                                                 original[..., 30, 1]], -1))
        pose_a, pose_b = a[f"{key}_pose"], b[f"{key}_pose"]
        assert torch.allclose(pose_b, pose_a * torch.tensor([-1.0, 1.0, -1.0]))
        assert torch.equal(a[f"{key}_expression"], b[f"{key}_expression"])
    assert sorted(IBUG68_FLIP) == list(range(68))
    assert all(IBUG68_FLIP[IBUG68_FLIP[i]] == i for i in range(68))


def test_colour_jitter_is_shared_by_every_frame(tiny_video_root: Path) -> None:
    records = discover(tiny_video_root, "train")
    brightness = AugmentConfig(flip_probability=0.0, brightness=0.3, contrast=0, saturation=0, hue=0)
    plain = TrainingDataset(records, "sequence", 4, 4, image_size=OUT, augment=False)
    jittered = TrainingDataset(records, "sequence", 4, 4, image_size=OUT, augment=brightness)
    a, b = plain[(0, 1)], jittered[(0, 1)]
    before = torch.cat([a["source"], a["driving"]])[:, 2, -4:, -4:]  # blue = 128/255, never clipped
    after = torch.cat([b["source"], b["driving"]])[:, 2, -4:, -4:]
    ratios = after / before
    assert float(ratios.std()) < 1e-3 and abs(float(ratios.mean()) - 1.0) > 1e-3


def test_sampling_and_augmentation_are_deterministic(tiny_video_root: Path) -> None:
    records = discover(tiny_video_root, "train")
    first = TrainingDataset(records, "pair", image_size=OUT, seed=7)
    second = TrainingDataset(records, "pair", image_size=OUT, seed=7)
    other_seed = TrainingDataset(records, "pair", image_size=OUT, seed=8)
    for index in range(len(first)):
        x, y = first[(3, index)], second[(3, index)]
        assert all(torch.equal(x[k], y[k]) for k in x if isinstance(x[k], torch.Tensor))

    def differs(x: dict, y: dict) -> bool:
        return not (torch.equal(x["source"], y["source"]) and torch.equal(x["driving"], y["driving"]))

    assert any(differs(first[(3, i)], other_seed[(3, i)]) for i in range(len(first)))
    assert any(differs(first[(3, i)], first[(4, i)]) for i in range(len(first)))
    # Plain integer indices use the epoch given to set_epoch.
    first.set_epoch(3)
    assert torch.equal(first[2]["source"], second[(3, 2)]["source"])


def test_worker_processes_give_the_same_batches(tiny_video_root: Path) -> None:
    dataset = PairDataset(discover(tiny_video_root, "train"), image_size=OUT, repeats=2, seed=1)
    sampler = SeededRandomSampler(len(dataset), seed=1)
    sampler.set_epoch(5)
    serial = list(torch.utils.data.DataLoader(dataset, batch_size=5, sampler=sampler))
    parallel = list(torch.utils.data.DataLoader(dataset, batch_size=5, sampler=sampler, num_workers=2))
    for a, b in zip(serial, parallel, strict=True):
        assert torch.equal(a["source"], b["source"]) and torch.equal(a["driving"], b["driving"])
        assert a["video"] == b["video"]


# --------------------------------------------------------------------------------------------- protocols
def test_same_identity_items(tiny_video_root: Path) -> None:
    records = discover(tiny_video_root, "test")
    dataset = SameIdentityDataset(records, image_size=OUT, max_frames=6)
    assert len(dataset) == len(TEST_VIDEOS)
    item = dataset[0]
    assert item["source"].shape == (1, 3, OUT, OUT) and item["driving"].shape == (6, 3, OUT, OUT)
    assert item["source_landmarks"].shape == (1, 68, 2) and item["driving_landmarks"].shape == (6, 68, 2)
    assert item["driving_pose"].shape == (6, 3) and item["driving_index"].tolist() == list(range(6))
    assert item["protocol"] == "same_identity"
    assert item["video"] == item["source_video"] == item["driving_video"] == records[0].name
    video = TEST_VIDEOS[records[0].name][0]
    assert decode(item["source"]) == [(video, 0)]
    assert decode(item["driving"]) == [(video, t) for t in range(6)]
    assert len(SameIdentityDataset(records, max_videos=2)) == 2
    assert SameIdentityDataset(records)[1]["driving"].shape[0] == FRAMES

    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=1, collate_fn=collate_single)))
    assert batch["source"].shape == (1, 1, 3, OUT, OUT) and batch["driving"].shape == (1, 6, 3, OUT, OUT)
    assert batch["protocol"] == ["same_identity"] and batch["driving_landmarks"].shape == (1, 6, 68, 2)


def test_cross_identity_pairs_and_items(tiny_video_root: Path, tmp_path: Path) -> None:
    records = discover(tiny_video_root, "test")
    pairs = make_cross_identity_pairs(records, 6, seed=3)
    assert pairs == make_cross_identity_pairs(list(reversed(records)), 6, seed=3)
    assert pairs != make_cross_identity_pairs(records, 6, seed=4)
    assert len(pairs) == 6 == len(set(pairs))
    identity = {r.name: r.identity for r in records}
    assert all(identity[s] != identity[d] for s, d in pairs)
    # More pairs asked for than exist: every ordered pair of different identities, once.
    assert len(make_cross_identity_pairs(records, 1000, seed=0)) == 4 * 3
    train = discover(tiny_video_root, "train")
    everything = make_cross_identity_pairs(train, 1000, seed=0)
    # 25 ordered pairs minus 5 self pairs and 2 x 2 alice/bob same-identity pairs.
    assert len(everything) == len(set(everything)) == 5 * 5 - 5 - 4
    assert make_cross_identity_pairs([r for r in train if r.identity == "alice"], 5, seed=0) == []

    path = save_pairs(tmp_path / "pairs" / "cross.json", pairs, seed=3, split="test")
    assert load_pairs(path) == pairs
    assert json.loads(path.read_text())["seed"] == 3

    dataset = CrossIdentityDataset(records, pairs, image_size=OUT, max_frames=4)
    item = dataset[0]
    source, driving = pairs[0]
    assert item["protocol"] == "cross_identity" and (item["source_video"], item["driving_video"]) == pairs[0]
    assert decode(item["source"]) == [(TEST_VIDEOS[source][0], 0)]
    assert decode(item["driving"]) == [(TEST_VIDEOS[driving][0], t) for t in range(4)]
    with pytest.raises(DatasetError, match="no video named 'nobody'"):
        CrossIdentityDataset(records, [("alice#3", "nobody")])
    with pytest.raises(DatasetError, match="both videos show identity"):
        CrossIdentityDataset(train, [("alice#1", "alice#2")])
    (tmp_path / "bad.json").write_text('{"pairs": [["a"]]}')
    with pytest.raises(DatasetError, match="bad.json"):
        load_pairs(tmp_path / "bad.json")


# --------------------------------------------------------------------------------------------- bad inputs
def test_missing_root_and_missing_splits(tmp_path: Path, make_root) -> None:
    report = check_dataset(tmp_path / "nowhere")
    assert not report.ok and "nowhere" in report.errors[0].path
    with pytest.raises(DatasetError, match="nowhere"):
        report.raise_if_errors()
    root = make_root()
    for video in (root / "test").iterdir():
        video.unlink()
    report = check_dataset(root)
    assert [(p.path, "holds no video" in p.message) for p in report.errors] == [(str(root / "test"), True)]
    (root / "test").rmdir()
    report = check_dataset(root)
    assert [p.path for p in report.errors] == [str(root / "test")]
    with pytest.raises(DatasetError, match="does not exist"):
        discover(root, "test")


def test_every_bad_file_is_reported_without_raising(make_root) -> None:
    root = make_root()
    train = root / "train"
    (train / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    write_video(train / "whole.mp4", coded_frames(2, frames=12))
    data = (train / "whole.mp4").read_bytes()
    (train / "half.mp4").write_bytes(data[: len(data) // 2])
    (train / "whole.mp4").unlink()
    write_video(train / "short.mp4", coded_frames(3, frames=1))
    write_frame_folder(train / "gray", coded_frames(4, frames=3)[..., 0])  # mode L PNGs
    rgba = np.concatenate([coded_frames(5, frames=3), np.full((3, SIZE, SIZE, 1), 255, np.uint8)], -1)
    write_frame_folder(train / "alpha", rgba)
    write_frame_folder(train / "mixed", coded_frames(6, frames=3))
    Image.fromarray(coded_frames(6, frames=1, height=40)[0]).save(train / "mixed" / "0003.png")
    write_video(train / "wide.mp4", coded_frames(7, frames=4, height=32, width=48))
    (root / "test" / "notes.txt").write_text("not a video")

    report = check_dataset(root, min_frames=2)
    errors = {Path(p.path).name: p.message for p in report.errors}
    warnings = {Path(p.path).name: p.message for p in report.warnings}
    assert set(errors) == {"noise.mp4", "half.mp4", "short.mp4", "mixed"}
    assert "cannot decode" in errors["noise.mp4"] and "cannot decode" in errors["half.mp4"]
    assert "too short" in errors["short.mp4"] and "different sizes" in errors["mixed"]
    assert "grayscale" in warnings["gray"] and "rgba" in warnings["alpha"]
    assert "non-square" in warnings["wide.mp4"] and "notes.txt" in warnings
    assert "different frame sizes" in warnings["train"] and "wide.mp4" in warnings["train"]
    assert report.videos["train"] == 9
    assert {r.name for r in report.records["train"]} == {"ann#1", "ben#1", "gray", "alpha", "wide"}
    json.dumps(report.to_json())
    report.render()
    with pytest.raises(DatasetError) as caught:
        report.raise_if_errors()
    for name in ("noise.mp4", "half.mp4", "short.mp4", "mixed"):
        assert name in str(caught.value)
    assert isinstance(caught.value, ValueError)

    # Grayscale and RGBA folders are read as RGB.
    converted = {r.name: r for r in report.records["train"]}
    assert read_video(converted["gray"].path).shape == (3, SIZE, SIZE, 3)
    sample = PairDataset([converted["gray"], converted["alpha"]], image_size=OUT, augment=False)[(0, 1)]
    assert sample["source"].shape == (1, 3, OUT, OUT)


def test_annotation_problems(make_root) -> None:
    root = make_root()
    write_annotation(root, "train", "ann#1", 0, frames=6)
    report = check_dataset(root)
    assert report.ok
    assert [Path(p.path).name for p in report.warnings] == ["ben#1.mp4"]
    assert report.annotation_keys["train"] == []
    report = check_dataset(root, require_annotations=True)
    assert {Path(p.path).name for p in report.errors} == {"ben#1.mp4", "ann#2.mp4", "ben#2.mp4"}

    write_annotation(root, "train", "ben#1", 1, frames=5)  # one frame short
    write_annotation(root, "test", "ann#2", 0, frames=6, landmarks=np.zeros((6, 5, 2), np.float32))
    write_annotation(root, "test", "ben#2", 1, frames=6, landmarks=None, pose=None, expression=None,
                     identity_coeffs=None, identity=None, extra=np.zeros(3))
    write_annotation(root, "test", "ghost", 2, frames=6)
    report = check_dataset(root)
    errors = {Path(p.path).name: p.message for p in report.errors}
    assert set(errors) == {"ben#1.npz", "ann#2.npz", "ben#2.npz"}
    assert "has 5 frames but the video has 6" in errors["ben#1.npz"]
    assert "'landmarks' has shape [6, 5, 2], expected [F, 68, 2]" in errors["ann#2.npz"]
    assert "none of the expected arrays" in errors["ben#2.npz"]
    assert any(Path(p.path).name == "ghost.npz" for p in report.warnings)


def test_datamodule_reports_bad_files_before_training(make_root) -> None:
    import lightning as L

    root = make_root()
    (root / "train" / "noise.mp4").write_bytes(b"\x00" * 100)
    write_video(root / "test" / "short.mp4", coded_frames(3, frames=1))
    steps: list[int] = []

    class Probe(L.LightningModule):
        train_sampling = SamplingSpec("pair")

        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(1, 1)

        def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
            steps.append(batch_idx)
            return self.layer(batch["source"].mean().view(1, 1)).sum()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    datamodule = ReenactDataModule(root=str(root), image_size=OUT, batch_size=2)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False)
    with pytest.raises(DatasetError) as caught:
        trainer.fit(Probe(), datamodule=datamodule)
    assert "noise.mp4" in str(caught.value) and "short.mp4" in str(caught.value)
    assert steps == []
    with pytest.raises(DatasetError, match="nowhere"):
        ReenactDataModule(root=str(root / "nowhere")).setup("fit")


# --------------------------------------------------------------------------------------------- DataModule
def test_datamodule_trains_with_the_models_sampling(tiny_video_root: Path) -> None:
    import lightning as L

    shapes: list[tuple] = []

    class Sequence3(L.LightningModule):
        train_sampling = SamplingSpec("sequence", 3, 3)

        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(1, 1)

        def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
            shapes.append((tuple(batch["source"].shape), tuple(batch["driving"].shape), self.current_epoch))
            return self.layer(batch["driving"].mean().view(1, 1)).sum()

        def validation_step(self, batch: dict, batch_idx: int) -> None:
            shapes.append(("val", tuple(batch["driving"].shape)))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    datamodule = ReenactDataModule(root=str(tiny_video_root), image_size=OUT, batch_size=2, repeats=2,
                                   val_max_videos=2, val_max_frames=3)
    trainer = L.Trainer(max_epochs=2, limit_train_batches=2, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        use_distributed_sampler=False, num_sanity_val_steps=0)
    trainer.fit(Sequence3(), datamodule=datamodule)
    assert datamodule.sampling_spec == SamplingSpec("sequence", 3, 3)
    train_shapes = [s for s in shapes if s[0] != "val"]
    assert train_shapes[0][:2] == ((2, 3, 3, OUT, OUT), (2, 3, 3, OUT, OUT))
    assert {s[2] for s in train_shapes} == {0, 1}
    assert [s for s in shapes if s[0] == "val"] == [("val", (1, 3, 3, OUT, OUT))] * 4
    # Lightning called set_epoch on the sampler, so the second epoch drew other samples.
    assert trainer.train_dataloader.sampler.epoch == 1


def test_datamodule_loaders_and_describe(tiny_video_root: Path, tmp_path: Path, monkeypatch) -> None:
    datamodule = ReenactDataModule(root=str(tiny_video_root), image_size=OUT, sampling="multi_source",
                                   num_source=2, batch_size=3, max_frames_per_video=5,
                                   num_cross_identity_pairs=5)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["source"].shape == (3, 2, 3, OUT, OUT) and batch["driving"].shape == (3, 1, 3, OUT, OUT)
    datamodule.setup("test")
    assert datamodule.test_protocols == ["same_identity", "cross_identity"]
    same, cross = datamodule.test_dataloader()
    assert len(same) == len(TEST_VIDEOS) and len(cross) == 5
    item = next(iter(cross))
    assert item["driving"].shape == (1, 5, 3, OUT, OUT) and item["protocol"] == ["cross_identity"]
    assert len(datamodule.cross_identity_pairs_list) == 5
    description = datamodule.describe()
    assert description["splits"]["train"]["videos"] == 5 and description["splits"]["test"]["annotations"]
    assert description["sampling"] == {"mode": "multi_source", "num_source": 2, "num_driving": 1}
    assert description["meta"] == {"generator": "tests/test_data.py"}
    json.dumps(description)

    # A pair file given on the command line is used as is.
    path = save_pairs(tmp_path / "pairs.json", [("dave", "alice#3")])
    fixed = ReenactDataModule(root=str(tiny_video_root), image_size=OUT, cross_identity_pairs=str(path))
    fixed.setup("test")
    assert fixed.cross_identity_pairs_list == [("dave", "alice#3")]
    stale = save_pairs(tmp_path / "stale.json", [("dave", "erin")])
    with pytest.raises(DatasetError, match=r"(?s)stale\.json.*no video named 'erin'"):
        ReenactDataModule(str(tiny_video_root), image_size=OUT, cross_identity_pairs=str(stale)).setup("test")

    # Under DDP every rank gets its own videos, none twice and none padded.
    import reenact.data.datamodule as datamodule_module

    seen: list[str] = []
    for rank in range(3):
        monkeypatch.setattr(datamodule_module, "_distributed", lambda rank=rank: (3, rank))
        loader = datamodule.test_dataloader()[0]
        assert isinstance(loader.sampler, UnpaddedDistributedSampler)
        seen += [batch["video"][0] for batch in loader]
        train_loader = datamodule.train_dataloader()
        assert isinstance(train_loader.sampler, EpochDistributedSampler)
    assert sorted(seen) == sorted(TEST_VIDEOS)


# --------------------------------------------------------------------------------------------- samplers
@pytest.mark.parametrize("size", [0, 1, 5, 7, 16])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_unpadded_sampler_covers_every_index_once(size: int, world_size: int) -> None:
    samplers = [UnpaddedDistributedSampler(size, num_replicas=world_size, rank=r) for r in range(world_size)]
    shards = [list(sampler) for sampler in samplers]
    assert sorted(i for shard in shards for i in shard) == list(range(size))
    assert [len(sampler) for sampler in samplers] == [len(shard) for shard in shards]
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_training_samplers_follow_the_epoch() -> None:
    sampler = SeededRandomSampler(20, seed=1)
    first = list(sampler)
    assert first == list(SeededRandomSampler(20, seed=1)) and sorted(i for _, i in first) == list(range(20))
    sampler.set_epoch(1)
    second = list(sampler)
    assert {e for e, _ in second} == {1} and [i for _, i in second] != [i for _, i in first]
    distributed = EpochDistributedSampler(range(20), num_replicas=2, rank=1, shuffle=True, seed=0)
    distributed.set_epoch(4)
    assert {e for e, _ in distributed} == {4} and len(list(distributed)) == 10


def test_data_report_type() -> None:
    report = DatasetReport(root="x")
    report.warning("a.mp4", "odd")
    assert report.ok and report.to_json()["warnings"] == 1


def test_augment_modes_flip_only_leaves_colours_exact() -> None:
    """``--data.augment flip``: flips happen, colours are untouched (models such as FSRT jitter themselves)."""
    import numpy as np
    import torch

    from reenact.data.augment import apply_augment, augment_config, sample_params

    assert augment_config(False) is None and augment_config("none") is None
    assert augment_config(True) == augment_config("full")
    with pytest.raises(ValueError, match="flip, none"):
        augment_config("jitter")
    config = augment_config("flip")
    frames = torch.rand(2, 3, 8, 8)
    flips = 0
    for seed in range(8):
        params = sample_params(config, np.random.default_rng(seed))
        sample = apply_augment({"source": frames[:1].clone(), "driving": frames[1:].clone()}, params)
        expected = frames.flip(-1) if params.flip else frames
        torch.testing.assert_close(torch.cat([sample["source"], sample["driving"]]), expected, rtol=0, atol=0)
        flips += params.flip
    assert 0 < flips < 8


def test_identity_balance_samples_every_identity_equally(tiny_video_root: Path) -> None:
    """``balance="identity"``: each identity equally often whatever its clip count (FSRT's sampling option);
    ``"video"`` (FOMM) follows the clip counts."""
    from collections import Counter

    from reenact.data.datasets import TrainingDataset
    from reenact.data.discovery import discover

    records = discover(tiny_video_root, "train")
    clips = Counter(record.identity for record in records)
    assert len(set(clips.values())) > 1, "the fixture should have identities with different clip counts"
    counts = {}
    for balance in ("video", "identity"):
        dataset = TrainingDataset(records, image_size=16, augment=False, repeats=6, balance=balance)
        counts[balance] = Counter(str(dataset.identities[int(dataset[i]["identity"])]) for i in range(len(dataset)))
    assert counts["video"] == Counter({identity: 6 * count for identity, count in clips.items()})
    assert len(set(counts["identity"].values())) == 1  # equal
    with pytest.raises(ValueError, match="balance must be"):
        TrainingDataset(records, balance="clip")
