"""Shared fixtures. Each block says who uses it; keep blocks independent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# ---------------------------------------------------------------- synthetic datasets (CLI, DDP, models)


@pytest.fixture(scope="session", autouse=True)
def reenact_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keep the embedded default dataset out of the user's cache unless REENACT_CACHE says where it is."""
    if os.environ.get("REENACT_CACHE"):
        return Path(os.environ["REENACT_CACHE"])
    cache = tmp_path_factory.mktemp("reenact-cache")
    os.environ["REENACT_CACHE"] = str(cache)
    return cache


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic talking-head dataset in the FOMM layout: 10 videos (8 train, 2 test), 10 frames, 64 px."""
    from reenact.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("synthetic") / "data"
    generate_dataset(root, videos=10, frames=10, size=64, seed=5, progress=False)
    return root


# ---------------------------------------------------------------- pretrained weights (weights, LPIPS, evaluation)


@pytest.fixture
def no_pretrained_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No real weights visible: empty REENACT_WEIGHTS_DIR (``tmp_path/weights``), TORCH_HOME (``tmp_path/torch``)
    and HOME, no per-weight overrides. Returns ``tmp_path``."""
    for key in list(os.environ):
        if key.startswith("REENACT_WEIGHTS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("REENACT_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "weights").mkdir(exist_ok=True)
    return tmp_path
