"""``reenact benchmark``: budget parsing, stage plans, the report's tables and verdicts, an end-to-end run with
resuming, and every model trained through the benchmark's DDP path (2 CPU processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from reenact.comparison.plan import Budget, Stage, plan
from reenact.comparison.report import floor_checks, markdown, metric_table


# ------------------------------------------------------------------------------------------------ budget
@pytest.mark.parametrize(("text", "steps", "seconds"), [
    ("300", 300, None), ("300steps", 300, None), ("1 step", 1, None), ("2.5min", None, 150.0), ("90s", None, 90.0),
    ("1h", None, 3600.0), (None, None, None),
])
def test_budget_parse(text: str | None, steps: int | None, seconds: float | None) -> None:
    budget = Budget.parse(text)
    assert (budget.steps, budget.seconds) == (steps, seconds)


def test_budget_multiple_of_the_presets_scales_every_model() -> None:
    budget = Budget.parse("4x")
    assert budget.factor == 4 and "4 x each preset" in budget.describe()
    preset = {s.key: s.max_steps for s in plan(["pechead", "keypoint-warp"], "tiny", Budget(), {})}
    scaled = {s.key: s.max_steps for s in plan(["pechead", "keypoint-warp"], "tiny", budget, {})}
    assert scaled["keypoint-warp"] == 4 * preset["keypoint-warp"] and scaled["pechead"] == 4 * preset["pechead"]
    assert scaled["pechead.reconstructor"] == pytest.approx(4 * preset["pechead.reconstructor"], abs=1)


@pytest.mark.parametrize("text", ["fast", "-3", "0", "2.5", "10 parsecs"])
def test_budget_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="--budget"):
        Budget.parse(text)


# -------------------------------------------------------------------------------------------------- plan
def _keys(stages: list) -> list[str]:
    return [s.key for s in stages]


def test_plan_prerequisites_and_step_scaling() -> None:
    stages = plan(["pechead", "lpmm", "copy-source"], "tiny", Budget(steps=60), {})
    assert _keys(stages) == ["pechead.reconstructor", "pechead", "pechead.test", "lpmm.backbone", "lpmm",
                             "lpmm.test", "copy-source.test"]
    by_key = {s.key: s for s in stages}
    # pechead tiny: 400 steps -> 60 (x0.15); R gets half the preset's main steps, scaled alike.
    assert by_key["pechead"].max_steps == 60 and by_key["pechead.reconstructor"].max_steps == 30
    assert by_key["pechead"].checkpoint_args == {"--model.reconstructor_ckpt": "pechead.reconstructor"}
    assert by_key["lpmm"].checkpoint_args == {"--model.backbone_ckpt": "lpmm.backbone"}
    assert by_key["lpmm.backbone"].model == "lia" and by_key["lpmm.backbone"].owner == "lpmm"
    # LPMM's internal stage lengths shrink with the budget (tiny: 150 + 600 batches of 750 steps -> x0.08).
    args = by_key["lpmm"].args
    assert args[args.index("--model.regressor_steps") + 1] == "12"
    assert args[args.index("--model.adaptor_steps") + 1] == "48"
    # So does the GAN warm-up of its LIA backbone (lia tiny: 1000 steps, GAN from 700; LPMM's factor x0.08).
    backbone = dict(zip(by_key["lpmm.backbone"].args[::2], by_key["lpmm.backbone"].args[1::2], strict=True))
    assert backbone["--model.gan_start_steps"] == "56" and by_key["lpmm.backbone"].max_steps == 80
    assert by_key["pechead.test"].checkpoint_args == {"--ckpt_path": "pechead"}
    assert by_key["copy-source.test"].checkpoint_args == {}


def test_plan_scales_step_counted_schedules() -> None:
    """FSRT's keypoint pretraining and phase starts shrink with a STEPS budget, so every phase still runs."""
    from reenact.registry import preset_config

    preset = preset_config("fsrt", "tiny")
    scale = 160 / preset["trainer"]["max_steps"]
    fsrt = plan(["fsrt"], "tiny", Budget(steps=160), {})[0]
    values = dict(zip(fsrt.args[::2], fsrt.args[1::2], strict=True))
    for name in ("kp_pretrain_steps", "phase2_start", "phase3_start"):
        assert values[f"--model.{name}"] == str(round(preset["model"][name] * scale)), name
    assert int(values["--model.phase3_start"]) < 160
    assert plan(["fsrt"], "tiny", Budget(seconds=60), {})[0].args == []  # a time budget keeps the preset's


def test_time_budget_is_converted_to_steps_from_a_measured_warmup(tmp_path: Path) -> None:
    """A time budget trains on steps: each stage's warm-up is timed once and the model's steps fill the time."""
    from reenact.comparison.calibrate import WARMUP_STEPS, calibrate, describe
    from reenact.comparison.runner import StageRunner, write_json
    from reenact.training.timing import STEP_TIMES_ENV

    seconds_per_step = {"warmup.pechead.reconstructor": 0.1, "warmup.pechead": 0.2, "warmup.keypoint-warp": 0.05}
    ran: list[Stage] = []

    class TimedRunner(StageRunner):  # stands in for the subprocesses: reports the timing a warm-up would measure
        def run(self, stage: Stage, on_progress: Any = None, environment: dict[str, str] | None = None) -> dict:
            ran.append(stage)
            timing = Path((environment or {})[STEP_TIMES_ENV])
            timing.parent.mkdir(parents=True, exist_ok=True)
            steps = stage.max_steps - 1
            timing.write_text(json.dumps({"batches": steps, "steps": steps,
                                          "seconds": steps * seconds_per_step[stage.key]}))
            record = {"stage": stage.to_dict(), "checkpoint": str(tmp_path / f"{stage.key}.ckpt")}
            write_json(self.directory(stage) / "done.json", record)
            return record

    runner = TimedRunner(tmp_path, "tiny", None, 0, [], [])
    budget = Budget(seconds=120)
    models = ["pechead", "keypoint-warp", "copy-source"]
    calibration = calibrate(models, "tiny", budget, {}, runner, tmp_path)
    preset = {s.key: s.max_steps for s in plan(models, "tiny", Budget(), {}) if s.command == "fit"}
    assert {s.key for s in ran} == set(seconds_per_step) and all(s.max_steps == WARMUP_STEPS for s in ran)
    # The generator's warm-up is given the reconstructor warm-up's checkpoint, as the real stages are.
    generator = next(s for s in ran if s.key == "warmup.pechead")
    assert generator.checkpoint_args == {"--model.reconstructor_ckpt": "warmup.pechead.reconstructor"}
    assert "copy-source" not in calibration["models"]  # nothing to train
    predicted = 0.1 * preset["pechead.reconstructor"] + 0.2 * preset["pechead"]
    assert calibration["models"]["pechead"]["steps"] == int(preset["pechead"] * 120 / predicted)
    assert calibration["models"]["keypoint-warp"]["steps"] == int(120 / 0.05)
    stages = {s.key: s for s in plan(models, "tiny", budget, {},
                                     {name: entry["steps"] for name, entry in calibration["models"].items()})}
    assert stages["keypoint-warp"].max_steps == 2400
    # Prerequisites keep their share of the model's steps: the whole model fills the 120 s.
    total = 0.1 * stages["pechead.reconstructor"].max_steps + 0.2 * stages["pechead"].max_steps
    assert total == pytest.approx(120, rel=0.02)
    assert "2400 steps" in describe(calibration) and "2 min per model" in describe(calibration)
    # Done once: a resumed benchmark reads calibration.json instead of running the warm-ups again.
    ran.clear()
    assert calibrate(models, "tiny", budget, {}, runner, tmp_path) == calibration and not ran
    with pytest.raises(ValueError, match="twice"):
        plan(["lia", "lia"], "tiny", Budget(), {})


def test_plan_with_checkpoints_skips_training() -> None:
    stages = plan(["fsrt", "lpmm"], "tiny", Budget(), {"fsrt": "/ckpt/fsrt.ckpt", "lia": "/ckpt/lia.ckpt"})
    assert _keys(stages) == ["fsrt.test", "lpmm", "lpmm.test"]
    assert stages[0].args == ["--ckpt_path", "/ckpt/fsrt.ckpt"]
    assert stages[1].args[-2:] == ["--model.backbone_ckpt", "/ckpt/lia.ckpt"]


def test_plan_rejects_unknown_model() -> None:
    with pytest.raises(ValueError, match="unknown model 'fomm'"):
        plan(["fomm"], "tiny", Budget(), {})


def test_plan_variants_share_the_prerequisite_and_pass_the_variant() -> None:
    stages = plan(["pechead:kp", "pechead:full", "copy-source"], "tiny", Budget(steps=40), {})
    assert _keys(stages) == ["pechead.reconstructor", "pechead:kp", "pechead:kp.test", "pechead:full",
                             "pechead:full.test", "copy-source.test"]
    by_key = {s.key: s for s in stages}
    for variant in ("kp", "full"):
        fit, test = by_key[f"pechead:{variant}"], by_key[f"pechead:{variant}.test"]
        assert fit.model == test.model == "pechead" and fit.owner == test.owner == f"pechead:{variant}"
        # The test stage rebuilds the same variant before loading the checkpoint into it.
        for stage in (fit, test):
            assert stage.args[stage.args.index("--model.variant") + 1] == variant
        assert fit.checkpoint_args == {"--model.reconstructor_ckpt": "pechead.reconstructor"}
        assert test.checkpoint_args == {"--ckpt_path": f"pechead:{variant}"}
    assert "--model.variant" not in by_key["pechead.reconstructor"].args


@pytest.mark.parametrize(("models", "message"), [
    (["pechead:nope"], "unknown variant 'nope' of 'pechead'; expected one of kp, lmk"),
    (["fsrt:kp"], "model 'fsrt' has no variants"),
    (["pechead:kp", "pechead:kp"], "listed twice"),
])
def test_plan_rejects_bad_variants(models: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan(models, "tiny", Budget(), {})


# ------------------------------------------------------------------------------------------------ report
def _metric(name: str, value: float | None, higher: bool = False, reason: str | None = None) -> dict[str, Any]:
    return {"name": name, "value": value, "higher_is_better": higher, "backend": f"{name}-backend",
            "count": 10, "reason": reason}


def _results(l1: float, akd: float | None, psnr: float) -> dict[str, Any]:
    reason = None if akd is not None else "no face found in any of 10 frames"
    return {"protocols": {"same_identity": {"videos": 2, "frames": 10, "metrics": [
        _metric("l1", l1), _metric("akd", akd, reason=reason), _metric("psnr", psnr, higher=True)]}}}


RESULTS = {"copy-source": _results(0.02, 2.0, 30.0), "a": _results(0.01, 3.0, 31.0), "b": _results(0.05, None, 25.0)}


def test_metric_table_marks_best_per_direction() -> None:
    table = metric_table(RESULTS, "same_identity")
    assert table["metrics"] == ["l1", "akd", "psnr"]
    assert table["best"] == {"l1": ["a"], "akd": ["copy-source"], "psnr": ["a"]}
    assert table["rows"]["b"]["akd"]["value"] is None


def test_floor_checks_say_who_does_not_beat_copy_source() -> None:
    checks = {(c["model"], c["metric"]): c for c in floor_checks(RESULTS, ["a", "b"])}
    assert checks[("a", "l1")]["beats"] is True
    assert checks[("a", "akd")]["beats"] is False
    assert checks[("b", "l1")]["beats"] is False
    # No face in b's frames while the evaluator works on copy-source: b fails the check, and the report says why.
    assert checks[("b", "akd")]["beats"] is False and "no face" in checks[("b", "akd")]["why"]
    unavailable = {name: {"protocols": {"same_identity": {"videos": 1, "frames": 1, "metrics": [
        _metric("l1", 0.1), _metric("akd", None, reason="dlib is not installed")]}}} for name in ("copy-source", "a")}
    check = {c["metric"]: c for c in floor_checks(unavailable, ["a"])}["akd"]
    assert check["beats"] is None and "dlib" in check["why"]


def test_markdown_report_shows_best_unavailable_and_verdict() -> None:
    from reenact.comparison.report import build_payload

    models = {name: {"trainable": name != "copy-source", "stages": [], "train_seconds": 1.0, "test_seconds": 2.0,
                     "results": results} for name, results in RESULTS.items()}
    settings = {"models": list(RESULTS), "preset": "tiny", "data": "synthetic", "dataset": None,
                "evaluation": "l1", "budget": Budget(steps=5).to_dict(), "seed": 0, "trainer_args": [],
                "command": "reenact benchmark"}
    text = markdown(build_payload(settings, models, "t0", "t1"))
    assert "| `a` | 2 | 10 | **0.0100** | 3.0000 | **31.0000** |" in text
    assert "n/a [1]" in text and "[1] no face found in any of 10 frames" in text
    assert "`a`, `b` did not beat `copy-source`" in text and "The budget was not changed" in text
    assert "Every learned model beats" not in text

    # A model that failed to train is named in a Failures section and fails the floor check.
    models["b"] = {**models["b"], "results": None, "error": "stage 'b' (fit b) exited with code 1; full log: x"}
    payload = build_payload(settings, models, "t0", "t1")
    assert payload["failures"] == {"b": "stage 'b' (fit b) exited with code 1; full log: x"}
    assert [c["beats"] for c in payload["floor"]["checks"] if c["model"] == "b"] == [False, False]
    assert "## Failures" in markdown(payload)

    # Nothing measured (no AKD selected) is not "beats the floor".
    only_l1 = {name: {"protocols": {"same_identity": {"videos": 1, "frames": 1, "metrics": [_metric("l1", value)]}}}
               for name, value in (("copy-source", 0.02), ("a", 0.01))}
    models = {name: {"trainable": name == "a", "stages": [], "train_seconds": 0.0, "test_seconds": 0.0,
                     "results": results} for name, results in only_l1.items()}
    text = markdown(build_payload({**settings, "models": list(only_l1)}, models, "t0", "t1"))
    assert "not every check could be measured" in text and "Every learned model beats" not in text


# ------------------------------------------------------------------------------------------- end to end
def _benchmark(args: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="160")
    return subprocess.run([sys.executable, "-m", "reenact.cli", "benchmark", *args], cwd=cwd, capture_output=True,
                          text=True, env=environment, timeout=timeout, check=False)


def test_benchmark_end_to_end_and_resume(synthetic_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    # The fixture's clips are 10 frames long: FOMM's protocol (every frame); FSRT's needs 11+.
    args = ["--models", "keypoint-warp,copy-source", "--data", str(synthetic_root), "--budget", "4",
            "--protocol", "fomm",
            "--eval-frames", "4", "--eval-pairs", "2", "--metrics", "l1,psnr,ms_ssim", "--samples", "1",
            "--data.batch_size", "2", "--data.repeats", "1", "--out", str(out)]
    run = _benchmark(args, tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert set(report["models"]) == {"keypoint-warp", "copy-source"}
    table = report["protocols"]["same_identity"]
    assert table["metrics"] == ["l1", "psnr", "ms_ssim"]
    videos = table["rows"]["copy-source"]["videos"]
    for model in ("copy-source", "keypoint-warp"):  # every model is evaluated on the same clips, 4 frames each
        assert (table["rows"][model]["videos"], table["rows"][model]["frames"]) == (videos, 4 * videos)
    assert report["models"]["keypoint-warp"]["stages"][0]["global_step"] == 4
    assert {c["metric"] for c in report["floor"]["checks"]} == {"l1", "akd"}
    for picture in ("bars_same_identity.png", "samples.png", "losses.png"):
        assert (out / picture).stat().st_size > 1000, picture
    text = (out / "report.md").read_text()
    assert "## same_identity" in text and "## Against the `copy-source` floor" in text
    assert "--data.batch_size 2" in text  # the shared trainer/data options are in the report

    done = out / "stages" / "keypoint-warp" / "done.json"
    before = done.read_text()
    again = _benchmark(args, tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "finished earlier" in again.stdout and done.read_text() == before  # not retrained

    changed = _benchmark([*args[:-2], "--budget", "5", "--out", str(out)], tmp_path)
    assert changed.returncode != 0 and "other settings (budget" in changed.stderr


def test_benchmark_rejects_bad_input_before_work(tmp_path: Path) -> None:
    missing = _benchmark(["--models", "copy-source", "--data", str(tmp_path / "nowhere"), "--out",
                          str(tmp_path / "o")], tmp_path)
    assert missing.returncode != 0 and "nowhere" in missing.stdout + missing.stderr
    assert not (tmp_path / "o").exists()
    typo = _benchmark(["--models", "copy-source", "--modle.lr", "1", "--out", str(tmp_path / "o")], tmp_path)
    assert typo.returncode != 0 and "--modle.lr" in typo.stderr
    owned = _benchmark(["--models", "copy-source", "--trainer.max_steps", "5", "--out", str(tmp_path / "o")], tmp_path)
    assert owned.returncode != 0 and "--budget" in owned.stderr
    bad_ckpt = _benchmark(["--models", "fsrt", "--ckpt", f"fsrt={tmp_path / 'none.ckpt'}", "--out",
                           str(tmp_path / "o")], tmp_path)
    assert bad_ckpt.returncode != 0 and "none.ckpt" in bad_ckpt.stdout + bad_ckpt.stderr


def test_every_model_trains_through_the_benchmark_ddp_path(synthetic_root: Path, tmp_path: Path) -> None:
    """Each learned model (and its prerequisite stages) fits and tests under ``--strategy ddp --devices 2``."""
    out = tmp_path / "ddp"
    run = _benchmark(["--models", "pechead,fsrt,lpmm,keypoint-warp", "--data", str(synthetic_root),
                      "--budget", "2", "--devices", "2", "--strategy", "ddp", "--accelerator", "cpu",
                      "--protocol", "fomm",
                      "--eval-frames", "2", "--eval-pairs", "2", "--metrics", "l1", "--samples", "0",
                      "--data.batch_size", "2", "--data.repeats", "1", "--out", str(out)], tmp_path, timeout=1500)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    report = json.loads((out / "report.json").read_text())
    for model in ("pechead", "fsrt", "lpmm", "keypoint-warp"):
        info = report["models"][model]
        assert info["error"] is None, model
        assert info["results"]["world_size"] == 2, model
        fits = [s for s in info["stages"] if s["command"] == "fit"]
        assert fits and all(s["global_step"] >= 1 for s in fits), model
    assert [s["key"] for s in report["models"]["lpmm"]["stages"]] == ["lpmm.backbone", "lpmm", "lpmm.test"]


def test_stage_progress_from_steps_and_the_csv_log(tmp_path: Path) -> None:
    from reenact.comparison.command import _stage_done
    from reenact.comparison.plan import Stage
    from reenact.comparison.runner import StageRunner

    stage = Stage(key="lia", model="lia", command="fit", owner="lia", max_steps=200)
    assert _stage_done(stage, 10.0, 50) == pytest.approx(25.0)
    assert _stage_done(stage, 500.0, None) == 0.0  # nothing logged yet
    assert _stage_done(stage, 500.0, 400) == 100.0
    runner = StageRunner(tmp_path, "tiny", None, 0, [], [])
    assert runner.current_step(stage) is None  # nothing logged yet
    log = tmp_path / "stages" / "lia" / "runs" / "lia" / "csv" / "version_0" / "metrics.csv"
    log.parent.mkdir(parents=True)
    log.write_text("epoch,step,train/g_total\n0,9,1.5\n0,19,1.2\n")
    assert runner.current_step(stage) == 19


def test_step_timer_times_steady_state_steps(tmp_path: Path) -> None:
    """The warm-up's timer skips the first batch (start-up) and writes steps and seconds for the rest."""
    import time
    from types import SimpleNamespace

    from reenact.training.timing import StepTimer

    timer = StepTimer(tmp_path / "times.json")
    trainer = SimpleNamespace(global_step=0, is_global_zero=True)
    for step in range(1, 6):
        time.sleep(0.01)
        trainer.global_step = 2 * step  # a GAN model: two optimiser steps per batch
        timer.on_train_batch_end(trainer, None, None, None, step)
    timer.on_train_end(trainer, None)
    measured = json.loads((tmp_path / "times.json").read_text())
    assert measured["batches"] == 4 and measured["steps"] == 8
    assert 0.035 < measured["seconds"] < 1.0
