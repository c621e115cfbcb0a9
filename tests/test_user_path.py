"""A new user's path (issue "A new user's path works"): each test reproduces a bug a user met, and failed before it.

* the saved ``config.yaml`` of a ``fit`` re-runs it with ``-c``; ``--trainer.default_root_dir`` moves every output;
* outputs have the umask's permissions (0644 / 0755 under umask 022), not ``mkstemp``'s 0600;
* ``test --ckpt_path`` leaves no temporary yaml behind; ``test`` of a learned model without a checkpoint refuses
  unless ``--untrained`` is given, and then its results say so;
* ``predict`` (``-s -d -o``) works for every registered model, ``edit`` for every model that edits;
* training-only networks (the VGG19 perceptual loss) are built when training starts, not by ``create_model``;
* bad inputs fail with one clear line before any work, and nothing written earlier is lost.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from reenact.cli import main
from reenact.data.video import atomic_path, read_video, write_frame_folder


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    # umask 022 in the child, whatever the test runner's: the modes asserted below are the ones a user sees.
    return subprocess.run([sys.executable, "-c", "import os, sys; os.umask(0o022); from reenact.cli import main; "
                           "sys.exit(main(sys.argv[1:]))", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=600)


def _untrained_checkpoint(name: str, directory: Path) -> Path:
    """A reenact checkpoint of ``name``'s tiny preset with its initial weights, written by the project's one
    checkpoint writer (what ``load_from_checkpoint`` reads)."""
    from reenact.models import create_model
    from reenact.registry import save_checkpoint

    return save_checkpoint(create_model(name, preset="tiny"), directory / f"{name}.ckpt")


def _editable_checkpoint(name: str, directory: Path) -> Path:
    """As :func:`_untrained_checkpoint`, but an LPMM's adaptor output layer is made non-zero, as training leaves
    it: `reenact edit` refuses an adaptor that never trained (every edit would render the same picture)."""
    from reenact.models import create_model
    from reenact.registry import save_checkpoint

    torch.manual_seed(0)
    model = create_model(name, preset="tiny")
    if name == "lpmm":
        with torch.no_grad():
            torch.nn.init.normal_(model.adaptor.mlp[-1].weight, std=0.05)
    return save_checkpoint(model, directory / f"{name}.ckpt")


# ------------------------------------------------------------------------------------------- file modes
def test_atomic_writes_honour_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "a.json") as temporary:
            temporary.write_text("{}")
        write_frame_folder(tmp_path / "frames", np.zeros((2, 4, 4, 3), np.uint8))
        assert _mode(tmp_path / "a.json") == 0o644
        assert _mode(tmp_path / "frames") == 0o755
        os.umask(0o077)
        with atomic_path(tmp_path / "b.json") as temporary:
            temporary.write_text("{}")
        assert _mode(tmp_path / "b.json") == 0o600
    finally:
        os.umask(previous)


def test_synthetic_dataset_is_readable_by_others(tmp_path: Path) -> None:
    from reenact.data.synthetic import generate_dataset

    previous = os.umask(0o022)
    try:
        root = generate_dataset(tmp_path / "data", videos=2, frames=3, size=32, seed=1, progress=False,
                                test_fraction=0.5)
    finally:
        os.umask(previous)
    root = Path(root)
    assert _mode(root) == 0o755
    video = next((root / "train").iterdir())
    assert _mode(video) == 0o644 and _mode(root / "meta.json") == 0o644


# ---------------------------------------------------------------------------------- fit / test wiring
@pytest.mark.slow
def test_fit_config_reruns_outputs_follow_root_dir_and_test_cleans_up(synthetic_root: Path, tmp_path: Path) -> None:
    work, runs = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    small = ["--data.root", str(synthetic_root), "--data.batch_size", "2", "--data.repeats", "1",
             "--data.max_frames_per_video", "4", "--trainer.val_check_interval", "2"]
    fit = _run(["fit", "--model", "keypoint-warp", *small, "--trainer.max_steps", "2",
                "--trainer.default_root_dir", str(runs)], cwd=work)
    assert fit.returncode == 0, fit.stdout[-3000:] + fit.stderr[-3000:]
    assert not (work / "runs").exists(), "outputs ignored --trainer.default_root_dir"
    # What the run prints: what it runs first; no args warning, no "Epoch 0/-2", no column of zero FLOPs.
    printed = fit.stdout + fit.stderr
    assert "reenact fit: model keypoint-warp, preset tiny" in " ".join(printed.split())
    for noise in ("args parameter", "/-2", "FLOPs", "was called before the ``update`` method"):
        assert noise not in printed, noise
    version = runs / "version_0"
    checkpoint, config = version / "checkpoints" / "last.ckpt", version / "config.yaml"
    assert checkpoint.is_file() and config.is_file() and list((runs / "csv").rglob("metrics.csv"))
    samples = list((version / "samples").glob("*.png"))
    assert samples
    for path in (checkpoint, config, samples[0]):
        assert _mode(path) == 0o644, f"{path}: {oct(_mode(path))}"

    # The saved config re-runs the job (it used to fail: "Parser key trainer.logger: Does not validate").
    again = _run(["fit", "--model", "keypoint-warp", "-c", str(config), "--trainer.max_steps", "1"], cwd=work)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert (runs / "version_1" / "checkpoints" / "last.ckpt").is_file()

    # test --ckpt_path: results under its own root, nothing left in the temporary folder.
    tested = _run(["test", "--ckpt_path", str(checkpoint), "--data.root", str(synthetic_root),
                   "--trainer.default_root_dir", str(tmp_path / "tested")], cwd=work, env={"TMPDIR": str(scratch)})
    assert tested.returncode == 0, tested.stdout[-3000:] + tested.stderr[-3000:]
    assert not list(scratch.glob("reenact-ckpt-*")), list(scratch.iterdir())
    results = next((tmp_path / "tested").rglob("results.json"))
    assert _mode(results) == 0o644
    assert json.loads(results.read_text())["untrained"] is False

    # A learned model without a checkpoint is scored only when asked, and its results say so.
    untrained = _run(["test", "--model", "keypoint-warp", "--untrained", "--data.root", str(synthetic_root),
                      "--trainer.default_root_dir", str(tmp_path / "untrained")], cwd=work)
    assert untrained.returncode == 0, untrained.stdout[-3000:] + untrained.stderr[-3000:]
    payload = json.loads(next((tmp_path / "untrained").rglob("results.json")).read_text())
    assert payload["untrained"] is True
    assert "untrained" in next((tmp_path / "untrained").rglob("results.md")).read_text()


def test_missing_split_is_one_clear_line(synthetic_root: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    shutil.rmtree(root / "test")
    with pytest.raises(SystemExit, match="split folder 'test/' does not exist"):
        main(["fit", "--model", "keypoint-warp", "--data.root", str(root), "--trainer.max_steps", "1",
              "--trainer.default_root_dir", str(tmp_path / "runs")])


def test_test_of_learned_model_without_checkpoint_refuses(synthetic_root: Path) -> None:
    with pytest.raises(SystemExit, match="--untrained"):
        main(["test", "--model", "pechead", "--data.root", str(synthetic_root)])


# ----------------------------------------------------------------------------------- predict and edit
@pytest.mark.parametrize("name", ["copy-source", "fsrt", "keypoint-warp", "lia", "lpmm", "pechead"])
def test_predict_works_for_every_registered_model(name: str, synthetic_root: Path, tmp_path: Path) -> None:
    from reenact.models import list_models

    assert name in list_models()
    video = sorted((synthetic_root / "test").iterdir())[0]
    out = tmp_path / "out.mp4"
    model_args = ["--model", name] if name == "copy-source" else ["--ckpt", str(_untrained_checkpoint(name, tmp_path))]
    assert main(["predict", *model_args, "-s", str(video), "-d", str(video), "-o", str(out), "--max-frames", "3"]) == 0
    assert read_video(out).shape == (3, 64, 64, 3)
    assert json.loads(out.with_suffix(".mp4.json").read_text())["model"] == name


def test_every_registered_model_is_covered_by_the_predict_test() -> None:
    from reenact.models import list_models

    assert set(list_models()) == {"copy-source", "fsrt", "keypoint-warp", "lia", "lpmm", "pechead"}


@pytest.mark.parametrize(("name", "edit_args"), [("lpmm", ["--param", "0=1.5", "--expression_preset", "surprise"]),
                                                 ("pechead", ["--yaw", "20"])])
def test_edit_works_for_every_model_that_edits(name: str, edit_args: list[str], synthetic_root: Path,
                                               tmp_path: Path) -> None:
    from reenact.registry import get_entry

    assert get_entry(name).load_class().supports_editing
    image = sorted((synthetic_root / "test").iterdir())[0]
    out = tmp_path / "edited.png"
    if name == "lpmm":  # an adaptor that never trained is refused, not silently ignored
        untrained = _untrained_checkpoint(name, tmp_path / "untrained")
        with pytest.raises(SystemExit, match="LP-adaptor was never trained"):
            main(["edit", "--ckpt", str(untrained), "-s", str(image), *edit_args, "-o", str(out)])
    checkpoint = _editable_checkpoint(name, tmp_path)
    assert main(["edit", "--ckpt", str(checkpoint), "-s", str(image), *edit_args, "-o", str(out)]) == 0
    assert out.is_file() and json.loads(out.with_suffix(".png.json").read_text())["model"] == name


def test_builtin_lpmm_preset_moves_the_named_points(synthetic_root: Path) -> None:
    """``surprise`` ships with reenact: projected onto a fitted basis, it raises the brows and drops the jaw."""
    from reenact.models import create_model
    from reenact.models.lpmm import control

    landmarks = torch.cat([torch.from_numpy(np.load(path)["landmarks"]).float()
                           for path in sorted((synthetic_root / "annotations" / "train").glob("*.npz"))])
    model = create_model("lpmm", preset="tiny")
    model.pca.fit_landmarks(landmarks, 64)
    values = control.builtin_preset_values(model, "surprise")
    delta = torch.tensor([values[i] for i in range(len(values))]) * model.pca.std
    moved = (delta @ model.pca.basis()).unflatten(-1, (68, 2))  # aligned units, +y down
    assert moved[17:27, 1].mean() < 0, "brows should move up"
    assert moved[6:11, 1].mean() > 0, "the jaw should drop"
    with pytest.raises(KeyError, match="built-in"):
        control.builtin_preset_values(model, "no-such-preset")


# --------------------------------------------------------------------------------------- weights rule
def test_creating_and_loading_models_needs_no_training_weights(no_pretrained_weights: Path) -> None:
    from reenact.models import create_model
    from reenact.weights import MissingWeightsError

    model = create_model("pechead", preset="paper")  # perceptual_weight 10: VGG19 is needed to train only
    assert model.hparams.perceptual_weight > 0 and model.perceptual is None
    with pytest.raises(MissingWeightsError, match="vgg19"):
        model.build_training_networks()


# ------------------------------------------------------------------------------------- errors before work
def test_predict_rejects_bad_inputs_before_any_work(synthetic_root: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    video = str(sorted((synthetic_root / "test").iterdir())[0])
    base = ["predict", "--model", "copy-source", "-s", video, "-d", video]
    for flag, value in (("--fps", "-5"), ("--max_frames", "0")):
        with pytest.raises(SystemExit):
            main([*base, "-o", str(tmp_path / "x.mp4"), flag, value])
        assert flag in capsys.readouterr().err
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit, match="cannot write"):
        main([*base, "-o", str(blocker / "out.mp4")])
    # An existing JSON summary is not overwritten silently either.
    sidecar = tmp_path / "y.mp4.json"
    sidecar.write_text("keep me")
    with pytest.raises(SystemExit, match="already exists"):
        main([*base, "-o", str(tmp_path / "y.mp4")])
    assert sidecar.read_text() == "keep me" and not (tmp_path / "y.mp4").exists()
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(SystemExit, match="empty"):
        main(["predict", "--ckpt", str(empty), "-s", video, "-d", video, "-o", str(tmp_path / "z.mp4")])
    assert not list(tmp_path.glob("*.mp4"))


def test_lpmm_edit_parameter_out_of_range_is_one_clear_line(synthetic_root: Path, tmp_path: Path) -> None:
    image = str(sorted((synthetic_root / "test").iterdir())[0])
    checkpoint = _editable_checkpoint("lpmm", tmp_path)
    with pytest.raises(SystemExit, match=r"--param 999: this LPMM has parameters 0\.\.39"):
        main(["edit", "--ckpt", str(checkpoint), "-s", image, "--param", "999=1", "-o", str(tmp_path / "e.png")])
    with pytest.raises(SystemExit, match="no LPMM preset 'nope'"):
        main(["edit", "--ckpt", str(checkpoint), "-s", image, "--expression_preset", "nope",
              "-o", str(tmp_path / "e.png")])
    assert not (tmp_path / "e.png").exists()


def test_predict_find_best_frame_starts_from_the_matching_pose(synthetic_root: Path, tmp_path: Path) -> None:
    """FOMM demo's --find-best-frame: the driving frame equal to the source wins, and the video keeps its length."""
    pytest.importorskip("dlib")
    from PIL import Image

    video = sorted((synthetic_root / "test").iterdir())[0]
    frames = read_video(video)
    source = tmp_path / "source.png"
    Image.fromarray(frames[6]).save(source)
    out = tmp_path / "best.mp4"
    args = ["predict", "--ckpt", str(_untrained_checkpoint("keypoint-warp", tmp_path)), "-s", str(source),
            "-d", str(video), "-o", str(out), "--find-best-frame"]
    with pytest.raises(SystemExit, match="add --relative"):
        main(args)
    assert main([*args, "--relative", "--device", "auto"]) == 0
    summary = json.loads(out.with_suffix(".mp4.json").read_text())
    assert summary["best_frame"] == 6 and summary["device"] in ("cpu", "cuda")
    assert read_video(out).shape[0] == frames.shape[0]


def test_registry_filters_and_checkpoint_path(tmp_path: Path) -> None:
    """timm-style registry: wildcard and capability filters; ``create_model(name, checkpoint_path=...)``."""
    from reenact.models import create_model, list_models

    assert list_models("*warp*") == ["keypoint-warp"]
    assert list_models(trainable=False) == ["copy-source"]
    assert list_models(editing=True) == ["lpmm", "pechead"]
    assert "paper" in __import__("reenact.registry").registry.get_entry("keypoint-warp").presets()
    checkpoint = _untrained_checkpoint("keypoint-warp", tmp_path)
    model = create_model("keypoint-warp", checkpoint_path=checkpoint)
    stored = torch.load(checkpoint, weights_only=True)["state_dict"]
    assert all(torch.equal(value, stored[key]) for key, value in model.state_dict().items())
    with pytest.raises(ValueError, match="holds a 'keypoint-warp' model"):
        create_model("fsrt", checkpoint_path=checkpoint)


def test_one_cache_folder_holds_weights_presets_and_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``$REENACT_CACHE`` moves the weights folder and the LPMM preset library with the synthetic dataset."""
    from reenact.data.synthetic import default_dataset_root
    from reenact.models.lpmm.control import default_preset_file
    from reenact.weights import default_weights_dir

    for key in ("REENACT_WEIGHTS_DIR", "REENACT_LPMM_PRESETS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("REENACT_CACHE", str(tmp_path / "cache"))
    for path in (default_weights_dir(), default_preset_file(), default_dataset_root()):
        assert path.is_relative_to(tmp_path / "cache"), path


def test_convert_released_fsrt_files_to_a_reenact_checkpoint(synthetic_root: Path, tmp_path: Path) -> None:
    """`reenact convert fsrt`: the released layout (model file + kp_detector.pt) -> a checkpoint predict reads."""
    from reenact.models import create_model, load_from_checkpoint

    torch.manual_seed(3)
    released = create_model("fsrt", preset="tiny").generator  # stands in for the released weights (tiny sizes)
    bundle = {part: getattr(released, part).state_dict() for part in ("encoder", "decoder", "expression_encoder")}
    bundle["it"] = 1000  # training state of the official Checkpoint.save, ignored
    torch.save(bundle, tmp_path / "vox256.pt")
    torch.save(released.kp_detector.state_dict(), tmp_path / "kp_detector.pt")
    out = tmp_path / "fsrt.ckpt"
    assert main(["convert", "fsrt", "--checkpoint", str(tmp_path / "vox256.pt"), "--kp-detector",
                 str(tmp_path / "kp_detector.pt"), "--preset", "tiny", "-o", str(out)]) == 0
    model = load_from_checkpoint(out)
    for name, value in released.state_dict().items():
        assert torch.equal(model.generator.state_dict()[name], value), name
    with pytest.raises(SystemExit, match="already exists"):
        main(["convert", "fsrt", "--checkpoint", str(tmp_path / "vox256.pt"), "--preset", "tiny", "-o", str(out)])
    # A file of another model is one clear line naming what is missing.
    torch.save({"gen": {}}, tmp_path / "wrong.pt")
    with pytest.raises(SystemExit, match="no expression_encoder"):
        main(["convert", "fsrt", "--checkpoint", str(tmp_path / "wrong.pt"), "--preset", "tiny",
              "-o", str(tmp_path / "x.ckpt")])
    video = sorted((synthetic_root / "test").iterdir())[0]
    assert main(["predict", "--ckpt", str(out), "-s", str(video), "-d", str(video), "-o", str(tmp_path / "a.mp4"),
                 "--max-frames", "2"]) == 0


def test_create_model_pretrained_reads_the_released_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """timm's ``pretrained=``: released files found in the weights folder become the model; a missing one is a
    clear error naming the file and where to put it; nothing is downloaded."""
    import reenact.registry as registry
    from reenact.models import create_model
    from reenact.weights import MissingWeightsError

    monkeypatch.setenv("REENACT_WEIGHTS_DIR", str(tmp_path / "weights"))
    assert registry.list_models(pretrained=True) == ["fsrt", "lia"]
    assert registry.pretrained_tags("fsrt") == ["vox256", "vox256-small"]
    with pytest.raises(MissingWeightsError, match=r"vox256\.pt"):
        create_model("fsrt", pretrained="vox256")
    with pytest.raises(ValueError, match="no pretrained tag 'celebv'"):
        create_model("fsrt", pretrained="celebv")
    with pytest.raises(ValueError, match="has no released weights"):
        create_model("pechead", pretrained=True)

    # The released layout at tiny sizes (the test swaps the preset; the real files have the paper's).
    monkeypatch.setattr(registry, "PRETRAINED_PRESET", "tiny")
    torch.manual_seed(4)
    released = create_model("fsrt", preset="tiny").generator
    (tmp_path / "weights").mkdir()
    torch.save({part: getattr(released, part).state_dict() for part in ("encoder", "decoder", "expression_encoder")},
               tmp_path / "weights" / "vox256.pt")
    torch.save(released.kp_detector.state_dict(), tmp_path / "weights" / "kp_detector.pt")
    model = create_model("fsrt", pretrained=True)
    for name, value in released.state_dict().items():
        assert torch.equal(model.generator.state_dict()[name], value), name
