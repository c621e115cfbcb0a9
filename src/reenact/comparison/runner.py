"""Runs the stages of a benchmark as ``reenact fit``/``reenact test`` subprocesses, resumably.

Layout of ``--out DIR``::

    DIR/benchmark.json            the settings (models, preset, budget, data, seed, trainer options)
    DIR/stages/<key>/             one folder per stage, the subprocess's working directory
        log.txt                   its stdout and stderr
        runs/<model>/...          Lightning's logs and checkpoints (TensorBoard, CSV, results.json)
        done.json                 written last, atomically: the stage finished (checkpoint, wall time)
    DIR/report.md, report.json, *.png

A stage with ``done.json`` is skipped on a re-run; a ``fit`` stage interrupted after its first checkpoint
resumes from ``last.ckpt`` (``--ckpt_path``), Lightning restoring the step count and the timer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reenact.comparison.plan import Stage
from reenact.data.video import atomic_write_json as write_json


class StageFailed(RuntimeError):
    """A stage's subprocess failed (``reason`` says how); the message ends with the last lines of its log."""

    def __init__(self, stage: Stage, log: Path, reason: str) -> None:
        tail = ""
        if log.is_file():
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        super().__init__(f"stage {stage.key!r} ({stage.command} {stage.model}) {reason}; full log: {log}\n"
                         f"--- last lines ---\n{tail}")
        self.stage, self.log, self.reason = stage, log, reason


class StageChanged(RuntimeError):
    """A finished stage was run with another definition than the one planned now."""


def _latest(directory: Path, pattern: str) -> Path | None:
    """The most recently written file matching ``pattern`` under ``directory``."""
    found = sorted(directory.glob(pattern), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


class StageRunner:
    """Builds each stage's command line from the shared settings and runs it in its own folder."""

    def __init__(self, out: Path, preset: str, data_root: str | None, seed: int, common_args: list[str],
                 test_args: list[str]) -> None:
        self.out = out
        self.preset = preset
        self.data_root = data_root
        self.seed = seed
        self.common_args = common_args
        self.test_args = test_args

    def directory(self, stage: Stage) -> Path:
        return self._key_directory(stage.key)

    def _key_directory(self, key: str) -> Path:
        return self.out / "stages" / key.replace(":", "-")  # "pechead:kp": no colon in a path

    def done(self, stage: Stage) -> dict[str, Any] | None:
        """The finished stage's record, or None; :class:`StageChanged` if it finished with another definition."""
        path = self.directory(stage) / "done.json"
        if not path.is_file():
            return None
        record = json.loads(path.read_text())
        if record.get("stage") != stage.to_dict():
            raise StageChanged(f"{path} was written by a stage defined differently ({record.get('stage')} now "
                               f"{stage.to_dict()})")
        return record

    def checkpoint(self, key: str) -> str:
        path = self._key_directory(key) / "done.json"
        if not path.is_file():
            raise RuntimeError(f"stage {key!r} has not finished: no {path}")
        checkpoint = json.loads(path.read_text()).get("checkpoint")
        if not checkpoint:
            raise RuntimeError(f"stage {key!r} finished without a checkpoint ({path})")
        return checkpoint

    def command(self, stage: Stage) -> list[str]:
        args = [sys.executable, "-m", "reenact.cli", stage.command, "--model", stage.model, "--preset", self.preset,
                "--seed_everything", str(self.seed), "--data.seed", str(self.seed)]
        if stage.command == "fit" and stage.max_steps is not None:
            # About 50 points on the loss curve however short the run (the shared options below may override).
            args += ["--trainer.log_every_n_steps", str(max(1, min(10, stage.max_steps // 50)))]
        args += self.common_args
        if self.data_root is not None:
            args += ["--data.root", self.data_root]
        if stage.command == "fit":
            if stage.max_steps is not None:
                args += ["--trainer.max_steps", str(stage.max_steps)]
            # Validation during training is not part of the comparison; the test stage evaluates.
            args += ["--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0"]
        else:
            args += self.test_args
        for option, key in stage.checkpoint_args.items():
            args += [option, self.checkpoint(key)]
        args += stage.args
        if stage.command == "fit":
            resume = _latest(self.directory(stage), f"runs/{stage.model}/version_*/checkpoints/last.ckpt")
            if resume is not None:
                args += ["--ckpt_path", str(resume)]
        return args

    def current_step(self, stage: Stage) -> int | None:
        """The last training step logged by a running ``fit`` stage (its newest CSV log), or None."""
        if stage.command != "fit":
            return None
        latest = _latest(self.directory(stage) / "runs" / stage.model, "csv/version_*/metrics.csv")
        if latest is None:
            return None
        try:
            with open(latest, "rb") as handle:
                handle.seek(max(0, latest.stat().st_size - 4096))
                last = handle.read().decode(errors="replace").strip().splitlines()[-1]
            header = latest.open().readline().strip().split(",")
            return int(float(last.split(",")[header.index("step")]))
        except (OSError, ValueError, IndexError):
            return None  # a log being written, or no row yet: progress is informative only

    def run(self, stage: Stage, on_progress: Callable[[float, int | None], None] | None = None,
            environment: dict[str, str] | None = None) -> dict[str, Any]:
        """Run ``stage`` (blocking) and write its ``done.json``; raise :class:`StageFailed` on failure.
        ``on_progress(seconds, step)`` is called every 2 s while it runs (``step``: last logged training step);
        ``environment`` adds variables to the stage's environment."""
        directory = self.directory(stage)
        directory.mkdir(parents=True, exist_ok=True)
        command = self.command(stage)
        log = directory / "log.txt"
        # A checkpoint every 30 s of training: an interrupted stage resumes close to where it stopped.
        environment = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="120", REENACT_CHECKPOINT_MINUTES="0.5",
                           **(environment or {}))
        attempts_path = directory / "attempts.json"
        attempts = json.loads(attempts_path.read_text()) if attempts_path.is_file() else []
        started = time.perf_counter()
        with open(log, "a") as stream:
            stream.write(f"\n$ {' '.join(command)}\n")
            stream.flush()
            process = subprocess.Popen(command, cwd=directory, stdout=stream, stderr=subprocess.STDOUT,
                                       env=environment)
            try:
                while True:
                    try:
                        returncode = process.wait(timeout=2.0)
                        break
                    except subprocess.TimeoutExpired:
                        if on_progress is not None:
                            on_progress(time.perf_counter() - started, self.current_step(stage))
            except BaseException:
                process.terminate()  # Ctrl-C: stop the stage too; its last checkpoint lets a re-run resume
                process.wait()
                raise
        # Every attempt counts towards the stage's wall time (an interrupted one ends without this line).
        attempts.append({"seconds": round(time.perf_counter() - started, 1), "returncode": returncode})
        write_json(attempts_path, attempts)
        if returncode != 0:
            raise StageFailed(stage, log, f"exited with code {returncode}")
        record: dict[str, Any] = {"stage": stage.to_dict(), "argv": command,
                                  "seconds": round(sum(a["seconds"] for a in attempts), 1),
                                  "attempts": len(attempts),
                                  "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        runs = directory / "runs" / stage.model
        if stage.command == "fit":
            checkpoint = _latest(runs, "version_*/checkpoints/last.ckpt")
            if checkpoint is None:
                raise StageFailed(stage, log, f"finished without writing a last.ckpt under {runs}")
            record["checkpoint"] = str(checkpoint.resolve())
            # One CSV log per attempt (a resumed run starts a new version): the loss curve joins them.
            record["metrics_csv"] = [str(path.resolve()) for path in
                                     sorted(runs.glob("csv/version_*/metrics.csv"), key=lambda p: p.stat().st_mtime)]
            record["global_step"] = _checkpoint_step(checkpoint)
            # A step budget must be spent whole: a run that stopped early (an exception Lightning swallowed, an
            # exhausted loader, a max_time) trained a different schedule than the report would claim.
            if (stage.max_steps is not None and record["global_step"] is not None
                    and record["global_step"] < stage.max_steps):
                raise StageFailed(stage, log, f"stopped at step {record['global_step']} of its budget of "
                                              f"{stage.max_steps} steps")
        else:
            results = _latest(runs, "version_*/results.json")
            if results is None:
                raise StageFailed(stage, log, f"finished without writing results.json under {runs}")
            record["results"] = str(results.resolve())
        write_json(directory / "done.json", record)
        return record


def _checkpoint_step(path: Path) -> int | None:
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=True).get("global_step"))
    except Exception:  # the step is informative only; a checkpoint Lightning wrote is otherwise fine
        return None
